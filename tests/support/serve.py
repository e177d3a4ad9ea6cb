"""`python -m hotcross.serve` (what `make run` ends with) for tests/hotcross/test_serve.py and test_deploy.py.

It binds its port itself, so it gets a free one (`tests.support.servers.free_port`) and is ready once /healthz
answers 200 (`wait_until`). Not `serve_command`: that one runs a server with this process's environment plus changes,
and this server must not see the suite's DJANGO_/HOTCROSS_/DATABASE_ variables (DJANGO_SETTINGS_MODULE among them).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import ROOT, RunningServer, answers, free_port, wait_until

DROPPED = ("DJANGO_", "HOTCROSS_", "DATABASE_")


def serve_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The server's environment: this one without DJANGO_/HOTCROSS_/DATABASE_ variables, DEBUG off, a SQLite file in
    `tmp_path`, and `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED)}
    env.update(SECRET_KEY="tests-serve", DEBUG="false", ALLOWED_HOSTS="127.0.0.1")
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/serve.sqlite3")
    env.update(overrides)
    return env


def serve_args(port: int) -> list[str]:
    """The command line of `python -m hotcross.serve` on 127.0.0.1:`port`."""
    return [sys.executable, "-m", "hotcross.serve", "--host", "127.0.0.1", "--port", str(port)]


@contextlib.contextmanager
def serving(tmp_path: Path, **overrides: str) -> Iterator[RunningServer]:
    """`python -m hotcross.serve` on a free port with `serve_env(tmp_path, **overrides)`, once /healthz answers 200;
    stopped (SIGTERM) at the end unless the test stopped it. Its output is `server.log()`."""
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            serve_args(port),
            cwd=ROOT,
            env=serve_env(tmp_path, **overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_until(server, answers("/healthz", method="GET", status=200))
        yield server
    finally:
        server.stop()
