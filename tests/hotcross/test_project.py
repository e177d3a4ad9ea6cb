"""Project wiring: settings from the environment, /healthz, the ASGI application under uvicorn."""

import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.support.servers import ROOT, uvicorn


def django_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}}
    env.update(overrides)
    return env


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=django_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_secret_key_and_debug_off_the_project_refuses_to_start(tmp_path):
    result = manage("check", DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite3")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_mode_has_a_development_secret_key(tmp_path):
    result = manage("check", DEBUG="true", DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite3")
    assert result.returncode == 0, result.stderr


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 - our own local server
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize(
    ("database", "status"),
    [("sqlite", 200), ("unreachable-postgres", 503)],
)
def test_healthz_under_uvicorn_says_whether_the_database_answers(tmp_path, database, status):
    url = {
        "sqlite": f"sqlite:///{tmp_path}/health.sqlite3",
        # Nothing listens on port 9 of this machine: the database does not answer.
        "unreachable-postgres": "postgres://postgres@127.0.0.1:9/nowhere",
    }[database]
    env = django_env(SECRET_KEY="test", DATABASE_URL=url, DATABASE_POOL_TIMEOUT="2", ALLOWED_HOSTS="127.0.0.1")
    with uvicorn(tmp_path, env) as server:  # up once /mcp asks for a key
        code, body = get(f"{server.base}/healthz")
        assert code == status, body
        assert (b'"ok"' in body) == (status == 200)
