"""Project wiring: settings from the environment, /healthz, the ASGI application under uvicorn."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 - our own local server
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def serve(database_url: str):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "hotcross.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=django_env(
            SECRET_KEY="test", DATABASE_URL=database_url, DATABASE_POOL_TIMEOUT="2", ALLOWED_HOSTS="127.0.0.1"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()) from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("uvicorn did not start")


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
    proc, base = serve(url)
    try:
        code, body = get(f"{base}/healthz")
        assert code == status, body
        assert (b'"ok"' in body) == (status == 200)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
