"""`python -m hotcross.serve` (what `make run` ends with): uvicorn that stops cleanly, with status 0, on Ctrl-C
(SIGINT) and SIGTERM, so `make` reports no error after a clean stop; a server that cannot start still fails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path: Path, port: int, **overrides: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HOTCROSS_", "DATABASE_"))}
    env.update(SECRET_KEY="tests-serve", DEBUG="false", ALLOWED_HOSTS="127.0.0.1")
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/serve.sqlite3")
    env.update(overrides)
    return subprocess.Popen(
        [sys.executable, "-m", "hotcross.serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_up(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                assert response.status == 200
                return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("the server did not start")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_by_signal_is_a_clean_exit(tmp_path, signum):
    port = free_port()
    proc = serve(tmp_path, port)
    wait_until_up(proc, port)
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "Finished server process" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output


def test_a_port_in_use_is_still_a_failure(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = serve(tmp_path, taken.getsockname()[1])
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, output
    assert "Traceback" not in output
