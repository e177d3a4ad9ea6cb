"""Real servers for tests: uvicorn serving `hotcross.asgi:application` on an ephemeral 127.0.0.1 port, as a
subprocess (the listening socket is handed over, so the port is known before it starts and never raced for).

`tests.mcp_bridge.conftest.run_uvicorn` (the MCP bridge's settings) and `tests.oauth.server.run_oauth_server` (a public
URL that is the server's own address, mail to files) are both this, with their own environment.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx2

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunningServer:
    base: str
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None


S = TypeVar("S", bound=RunningServer)


@contextlib.contextmanager
def serve_asgi(
    log_dir: Path,
    env: Callable[[str], dict[str, str]],
    server: Callable[[str, subprocess.Popen, Path], S] = RunningServer,  # type: ignore[assignment]
) -> Iterator[S]:
    """uvicorn serving hotcross.asgi:application on an ephemeral 127.0.0.1 port, with `env(base_url)` as its whole
    environment, its output in `log_dir`; yields `server(base_url, process, log_path)` once `/mcp` answers, and stops
    the process at the end."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    log_path = log_dir / f"uvicorn-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "hotcross.asgi:application"),
                *("--fd", str(sock.fileno()), "--no-access-log", "--log-level", "warning"),
            ],
            pass_fds=[sock.fileno()],
            env=env(base),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sock.close()
    running = server(base, process, log_path)
    try:
        wait_until_serving(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_serving(server: RunningServer, timeout: float = 60) -> None:
    """Return once the server's `/mcp` answers (401 without a key); raise with its log if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"uvicorn exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx2.post(server.url, json={}, timeout=2).status_code == 401:  # the MCP app answers: it is up
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"uvicorn did not start within {timeout} s:\n{server.log()}")
