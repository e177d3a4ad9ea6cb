"""No traceback for a setting that is missing or unusable, or a database that is unreachable or not migrated: one
line saying what to do, and a non-zero exit status (manage.py, hotcross.asgi under uvicorn)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HOTCROSS_", "DATABASE_"))}
    env.pop("DEBUG", None)
    env.pop("SECRET_KEY", None)
    env["DOTENV_FILE"] = ""
    env.update(overrides)
    return env


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=120)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "manage.py", *args], **env)


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "SECRET_KEY is not set. Set SECRET_KEY"),
        ({"DEBUG": "maybe"}, "DEBUG must be true or false."),
        ({"DEBUG": "true", "HOTCROSS_KEY_CACHE_SECONDS": "soon"}, "HOTCROSS_KEY_CACHE_SECONDS must be a number."),
        ({"DEBUG": "true", "HOTCROSS_MCP_DB_THREADS": "many"}, "HOTCROSS_MCP_DB_THREADS must be a whole number."),
        ({"DEBUG": "true", "DOTENV_FILE": "/nonexistent/.env"}, "DOTENV_FILE names /nonexistent/.env"),
        ({"DEBUG": "true", "DATABASE_URL": "postgres://u:secret@h:port/d"}, "DATABASE_URL is not a usable"),
        # No scheme (issue 31): django-environ gives no engine (and warns with the URL, password included).
        ({"DEBUG": "true", "DATABASE_URL": "u:secret@127.0.0.1:5432/x"}, "DATABASE_URL must start with the database's"),
        ({"DEBUG": "true", "DATABASE_URL": "127.0.0.1:5432/x"}, "DATABASE_URL must start with the database's"),
        ({"DEBUG": "true", "HOTCROSS_PUBLIC_URL": "127.0.0.1:8000"}, "HOTCROSS_PUBLIC_URL must be the site's address"),
        ({"DEBUG": "true", "HOTCROSS_RATE_LIMIT_LEASE_SECONDS": "60"}, "HOTCROSS_RATE_LIMIT_LEASE_SECONDS must be"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path, env, says):
    env.setdefault("DATABASE_URL", f"sqlite:///{tmp_path}/x.sqlite3")
    line = one_line(manage("orgs", "list-orgs", **env))
    assert line.startswith("Configuration error: ") and says in line
    assert "secret" not in line  # a value is never echoed: it may be a password


def test_the_asgi_app_refuses_to_start_with_one_line(tmp_path):
    line = one_line(run([sys.executable, "-c", "import hotcross.asgi"], DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite3"))
    assert line.startswith("Hotcross cannot start: SECRET_KEY is not set.")


@pytest.mark.parametrize(
    "command", [("orgs", "list-orgs"), ("orgs", "show-org", "00000000-0000-0000-0000-000000000000"), ("seed_demo",)]
)
def test_an_unmigrated_database_says_to_migrate(tmp_path, command):
    line = one_line(manage(*command, DEBUG="true", DATABASE_URL=f"sqlite:///{tmp_path}/empty.sqlite3"))
    assert line.startswith("The database has not been migrated") and "manage.py migrate" in line


@pytest.mark.parametrize("command", [("orgs", "list-orgs"), ("seed_demo",)])
def test_an_unreachable_database_is_named(command):
    # Nothing listens on port 9 here. The connection pool logs its retries as warnings; the answer is one line.
    result = manage(
        *command, DEBUG="true", DATABASE_URL="postgres://postgres@127.0.0.1:9/nowhere", DATABASE_POOL_TIMEOUT="1"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    ours = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and "psycopg.pool" not in line and not line.startswith("\t")
    ]
    assert ours == [ours[0]] and ours[0].startswith("Hotcross cannot reach its database (postgresql, nowhere)"), (
        result.stderr
    )
    assert "DATABASE_URL" in ours[0]
    # Issue 31: the pool printed ~9 warnings (each two lines) first; now its first failure only, in one line.
    pool = [line for line in result.stderr.splitlines() if "psycopg.pool" in line or line.startswith("\t")]
    assert len(pool) <= 1, result.stderr
