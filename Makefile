# The two commands of README: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install sandbox-tools run test test-tools lint format bench clean db-template

install: $(STAMP) sandbox-tools

# Organization scope runs each organization's upstream process in a bubblewrap sandbox (upstream/sandbox.py): Debian's
# bubblewrap, installed with apt as root (elsewhere a note: `manage.py check` then says organization scope cannot
# start, mcp_bridge.E012, and its tests skip locally and fail under CI=true).
sandbox-tools:
	@if command -v bwrap >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap; \
	else echo "note: bubblewrap is not installed and cannot be installed here (needs root and apt); organization scope's sandbox cannot run"; fi

# Re-installs only when a lock file changes; the locks pin every package with its hash. uv (itself pinned and hashed
# in requirements-uv.lock, installed by pip) installs requirements.lock in ~9 s, uv itself and bytecode included, where
# pip took ~60 s on a two-core machine (bench/first_serve.py); pip installs it when uv cannot be had or fails.
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines) nothing would ever
# write the .pyc files, and every process of the suite would compile Django and the rest again from source.
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes
$(STAMP): requirements.lock requirements-uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if $(PIP) -r requirements-uv.lock && $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --require-hashes -r requirements.lock; then \
		echo "installed requirements.lock with uv"; \
	else echo "uv did not install requirements.lock: pip does"; $(PIP) -r requirements.lock; fi
	touch $(STAMP)

# `make run` writes a development .env when there is none (never overwriting one: hotcross/local_env.py), so
# commands in another terminal read the same settings. HOTCROSS_PUBLIC_URL is what this run serves (0.0.0.0 is
# reached as 127.0.0.1) unless given. ROTATE_DEMO_KEY=1 gives the demo developer a new key (printed once).
# hotcross/serve.py runs uvicorn and exits 0 when stopped by Ctrl-C or SIGTERM.
run: PUBLIC_HOST = $(if $(filter 0.0.0.0 :: [::],$(HOST)),127.0.0.1,$(HOST))
run: export HOTCROSS_PUBLIC_URL ?= http://$(PUBLIC_HOST):$(PORT)
run: install
	@mkdir -p var
	@$(BIN)/python -m hotcross.local_env
	@$(BIN)/python -m hotcross.db_template
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo$(if $(filter-out 0,$(ROTATE_DEMO_KEY)), --rotate-key)
	exec $(BIN)/python -m hotcross.serve --host $(HOST) --port $(PORT)

# A new SQLite database is made from hotcross/sqlite_template.sql.gz (every migration applied) in a fraction of a second
# instead of ~40 s of migrating (hotcross/db_template.py). After adding a migration, write the template again:
db-template: install
	$(BIN)/python -m hotcross.db_template --build

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# What the whole suite needs besides Python: the MCP Inspector CLI and the MCP conformance runner with its Node.js 22
# (npm, pinned by package-lock.json; that Node.js on Linux x64 only) and Debian's chromium for the admin's browser
# tests (apt, as root; Playwright never downloads a browser). Where they cannot be installed, those tests skip locally
# and fail under CI=true.
test-tools: node_modules/.installed
	@if command -v node >/dev/null 2>&1; then node scripts/check-node.mjs; fi
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else echo "note: chromium is not installed and cannot be installed here (needs root and apt); browser tests will skip"; fi

node_modules/.installed: package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "note: npm is not installed; the MCP Inspector tests will skip"; fi

# The whole suite on DATABASE_URL's database (SQLite by default), in PYTEST_WORKERS processes (pytest-xdist; 0 for one
# process), the 15 slowest tests printed at the end. docs/testing.md: running one file, adding a test.
PYTEST_WORKERS ?= 2
test: install test-tools lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=15 $(PYTEST_ARGS)

# Figures, not pass/fail (docs/benchmarks.md). PostgreSQL on 127.0.0.1:5432 unless BENCH_PG / --server say otherwise.
BENCH_DB ?= postgres://postgres@127.0.0.1:5432/hotcross_bench_mcp
bench: install
	$(BIN)/python bench/key_check.py
	$(BIN)/python bench/legacy_migration.py
	DATABASE_URL=$(BENCH_DB) $(BIN)/python bench/mcp_overhead.py
	$(BIN)/python bench/admin_pages.py

clean:
	rm -rf $(VENV) var/*.sqlite3 .pytest_cache
