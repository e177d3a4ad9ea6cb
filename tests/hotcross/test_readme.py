"""The newcomer's first hour: `make run` in one terminal, then the docs' commands in another, exactly as printed.

One `make run` (on a free port, with its own .env and SQLite file in a temporary folder) serves for the module; every
`manage.py orgs` and `manage.py usage` line of README.md and docs/*.md is then run from the repository folder in a
fresh environment without DEBUG or SECRET_KEY, as a second terminal would be. Finally Ctrl-C stops `make run` with
nothing that looks like an error. `-o install` keeps make from reinstalling the shared virtualenv: the suite already
runs in it. (tests/hotcross/test_docs.py checks that every other command of the docs parses.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import ROOT, RunningServer, free_port, wait_until

# README and the pages of docs/ (issue 31 moved most of README's commands there), read as one text: README first, then
# the pages by name. The orgs lines run in that order (later lines act on what earlier ones created).
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = "\n\n".join(path.read_text(encoding="utf-8") for path in DOCS)
PYTHON = ".venv/bin/python"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def terminal_env(folder: Path) -> dict[str, str]:
    """A new terminal's environment: nothing of Django's or ours, only where this test keeps its .env and database
    (which, in a real checkout, are the repository's `.env` and `var/hotcross.sqlite3`)."""
    drop = ("DJANGO_", "HOTCROSS_", "DATABASE_", "SECURE_", "STRIPE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for name in ("DEBUG", "SECRET_KEY", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "HOST", "PORT"):
        env.pop(name, None)
    env["DOTENV_FILE"] = str(folder / ".env")
    env["DATABASE_URL"] = f"sqlite:///{folder / 'hotcross.sqlite3'}"
    return env


@dataclass
class MakeRun:
    server: RunningServer
    env: dict[str, str]

    @property
    def process(self) -> subprocess.Popen:
        return self.server.process

    @property
    def url(self) -> str:
        return self.server.base

    def text(self) -> str:
        return self.server.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def make_run(tmp_path_factory) -> Iterator[MakeRun]:
    folder = tmp_path_factory.mktemp("first-hour")
    env = terminal_env(folder)
    # `make run` binds the port itself (after migrating, so a minute or more later): a free one, and ready once
    # uvicorn says it runs there.
    port = free_port()
    output = folder / "make-run.log"
    with output.open("wb") as log:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "-o", "install", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as in a terminal: Ctrl-C reaches make and uvicorn
        )
    run = MakeRun(RunningServer(f"http://127.0.0.1:{port}", process, output), env)
    try:
        wait_until(run.server, lambda base: f"Uvicorn running on {base}" in run.text(), timeout=300)
        yield run
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def terminal(make_run: MakeRun, command: str) -> subprocess.CompletedProcess:
    """Run one README command line in a shell from the repository folder, as a second terminal would."""
    return subprocess.run(  # noqa: S602 - README's own command lines, through a shell as a person types them
        command, shell=True, cwd=ROOT, env=make_run.env, capture_output=True, text=True, timeout=120
    )


def assert_no_traceback(result: subprocess.CompletedProcess, command: str) -> None:
    assert "Traceback" not in result.stdout + result.stderr, f"{command}\n{result.stderr}"


# --- README's orgs lines -------------------------------------------------------------------------------------------


def shell_blocks(text: str) -> list[str]:
    """The bodies of the ```bash and plain ``` code blocks, fences paired in order (a ```json block's closing fence is
    not the opening of another block)."""
    blocks, language, body = [], None, []
    for line in text.splitlines():
        fence = line.strip()
        if fence.startswith("```"):
            if language is None:
                language, body = fence[3:].strip(), []
            else:
                if language in ("", "bash"):
                    blocks.append("\n".join(body))
                language = None
        elif language is not None:
            body.append(line)
    return blocks


def readme_orgs_lines() -> list[str]:
    """Every `.venv/bin/python manage.py orgs …` line of the docs' code blocks, and the "New" column of the table that
    maps the old script's commands (`create-org "Acme Corp" [STRIPE_ID] …`, each as `.venv/bin/python manage.py orgs
    …`)."""
    lines = []
    for block in shell_blocks(README):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith(f"{PYTHON} manage.py orgs"):
                lines.append(command)
    table = README[README.index("| Old (`scripts/admin/manage_orgs.py …`)") :]
    table = table[: table.index("\n\n")]
    for row in table.splitlines()[2:]:
        new = row.split("|")[2]
        # A command starts with its verb (a word); other code in the cell (`--grace`, `30s`, `never`) describes it.
        for verb in re.findall(r"`([a-z][a-z-]*(?: [^`]*)?)`", new):
            if verb != "never":
                lines.append(f"{PYTHON} manage.py orgs {verb}")
    return lines


def test_readme_lists_the_orgs_commands_this_test_runs():
    lines = readme_orgs_lines()
    verbs = {line.split()[3] for line in lines}
    assert {"--help", "VERB", "create-org", "list-orgs", "create-dev", "rotate-key", "sync-stripe"} <= verbs, lines


def fill(line: str, values: dict[str, str]) -> str:
    """README's placeholders with real values; an optional `[…]` part is kept when it can be filled, else left out."""

    def optional(match: re.Match) -> str:
        inner = match.group(1)
        return "" if "…" in inner else inner

    line = re.sub(r"\[([^\]]*)\]", optional, line)
    for name, value in values.items():
        line = re.sub(rf"\b{name}\b", value, line)
    return " ".join(line.split())


def orgs_json(make_run: MakeRun, *args: str) -> list[dict]:
    result = terminal(make_run, f"{PYTHON} manage.py orgs {' '.join(args)} --json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_orgs_line_of_the_readme_works_as_printed(make_run):
    assert "API key      hc_live_" in make_run.text()
    lines = readme_orgs_lines()
    verbs = sorted({line.split()[3] for line in lines} - {"--help", "VERB"})
    ran = []
    values: dict[str, str] = {}

    def refresh_ids() -> None:
        org_ids = {o["name"]: o["id"] for o in orgs_json(make_run, "list-orgs")}
        org_id = org_ids.get("Acme Corp") or org_ids["Demo Org"]
        developers = orgs_json(make_run, "list-devs", org_id)
        values.update(
            ORG_ID=org_id,
            DEV_ID=developers[0]["id"] if developers else "00000000-0000-0000-0000-000000000000",
            STRIPE_ID="cus_readme0001",
            MAX_SEATS="3",
            STATUS="active",
            S="active",
            N="4",
            EMAIL="alice@acme.example",
            FIRST="Alice",
            LAST="Smith",
        )

    def commands_of(line: str) -> list[str]:
        if "VERB" in line:
            return [line.replace("VERB", verb) for verb in verbs]
        return [fill(line, values)]

    def check(command: str, result: subprocess.CompletedProcess) -> None:
        assert_no_traceback(result, command)
        if command.endswith("--help"):
            assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr
        elif " sync-stripe" in command:
            # No Stripe key in a fresh checkout: the documented refusal, one line naming what to set.
            assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert "STRIPE_TEST_SECRET_KEY" in result.stderr or "Stripe customer" in result.stderr
        elif " legacy-report" in command:
            assert result.returncode in (0, 1), result.stderr  # 1 = rows would stop the migration
        else:
            assert result.returncode == 0, f"{command}\n{result.stderr}"
        ran.append(command)

    refresh_ids()
    # The --help lines (README's first two, `VERB` being every verb) read and change nothing: they run first, a few at
    # a time (and `create-org --help` creates nothing to refresh the ids for). The others run one after the other in
    # README's order: later lines act on what earlier ones created.
    helps = [command for line in lines if line.endswith("--help") for command in commands_of(line)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        for command, result in zip(helps, pool.map(lambda c: terminal(make_run, c), helps), strict=True):
            check(command, result)
    for line in lines:
        if line.endswith("--help"):
            continue
        for command in commands_of(line):
            check(command, terminal(make_run, command))
            if " create-" in command:
                refresh_ids()  # the ids of what was just created: later lines act on it
    assert any(c.startswith(f"{PYTHON} manage.py orgs create-dev ") for c in ran)
    assert "alice@acme.example" in {d["email"] for d in orgs_json(make_run, "list-devs")}


def readme_usage_lines() -> list[str]:
    """Every `.venv/bin/python manage.py usage …` line of the docs' code blocks, as printed."""
    lines = []
    for block in shell_blocks(README):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith(f"{PYTHON} manage.py usage "):
                lines.append(command)
    return lines


def test_every_usage_line_of_the_readme_works_as_printed(make_run):
    """Issue 31: `usage rebuild-rollups --since 2026-11-01 [--until 2026-12-01]` failed as printed (the brackets)."""
    lines = readme_usage_lines()
    assert any(" rebuild-rollups " in line and "--until" in line for line in lines), lines
    for command in lines:
        result = terminal(make_run, command)
        assert_no_traceback(result, command)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


def test_the_webhook_endpoint_command_uses_the_port_make_run_serves(make_run):
    result = terminal(make_run, f"{PYTHON} manage.py stripe_webhook_endpoint --print-url --secret whsec_readme0123456")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(f"{make_run.url}/stripe/webhook/")
    # The one registered by make run's seeding: updated, not a second one on another port.
    assert result.stdout.strip() in make_run.text()


def test_the_server_make_run_started_answers(make_run):
    import urllib.request

    with urllib.request.urlopen(f"{make_run.url}/healthz", timeout=10) as response:  # noqa: S310 - local server
        assert json.loads(response.read()) == {"status": "ok", "database": "up"}
    with urllib.request.urlopen(f"{make_run.url}/", timeout=10) as response:  # noqa: S310 - local server
        assert f"{make_run.url}/mcp".encode() in response.read()


def test_ctrl_c_stops_make_run_cleanly(make_run):
    # Last in this module: it stops the server.
    os.killpg(make_run.process.pid, signal.SIGINT)
    make_run.process.wait(timeout=60)
    text = make_run.text()
    assert "Finished server process" in text
    assert "make: ***" not in text and "Error" not in text and "Traceback" not in text, text[-2000:]
