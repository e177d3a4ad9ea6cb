"""The one launcher of real servers for tests and benches: uvicorn serving the project (or another ASGI app), and any
command that serves HTTP on a port it is given.

- **Ports without races.** uvicorn gets a socket this process has already bound and put in listening state (on
  127.0.0.1, port 0), handed over with `--fd`: the port is known before the server starts and nobody else can take
  it. A command that must bind a port itself (a Node server, say) gets a free port and, if it loses it to another
  process in the meantime, is started again on another (`serve_command`).
- **TCP_NODELAY.** uvicorn treats a socket handed over with `--fd` as a Unix socket, and asyncio then never sets
  TCP_NODELAY on its connections: Nagle's algorithm and delayed ACKs add ~40 ms to every answer. The listening
  socket gets TCP_NODELAY here, and Linux gives it to every connection accepted from it.
- **Readiness by polling** (`wait_until`: a probe every 20 ms, the server's log in the error when it exits or never
  answers), **stop by process** (SIGTERM, then SIGKILL after a timeout; `RunningServer.stop`).

Servers write their output to a log file in a folder the caller gives (a test's `tmp_path`), read by `log()`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
APP = "hotcross.asgi:application"
POLL_SECONDS = 0.02


def listening_socket(backlog: int = 1024) -> socket.socket:
    """A TCP socket listening on 127.0.0.1 at a port of its own, with TCP_NODELAY for the connections it accepts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


def free_port() -> int:
    """A port nothing listens on right now. Only for what cannot be handed a socket; whoever binds it may lose it to
    another process first (`serve_command` starts again on another port then)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def closed_port() -> int:
    """A 127.0.0.1 port where connections are refused (nothing listens there)."""
    return free_port()


@dataclass
class RunningServer:
    base: str
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Stop the process (`sig`, then SIGKILL after `timeout` seconds); its exit code."""
        return stop_process(self.process, sig, timeout)


S = TypeVar("S", bound=RunningServer)


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    """Send `sig` unless the process has ended, wait up to `timeout` s, then kill it; its exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def answers(path: str = "/mcp", *, method: str = "POST", status: int | None = 401) -> Callable[[str], bool]:
    """A probe: `method` `path` answers (with `status`, when given). The default is the project's `/mcp` without a
    key, which answers 401 once the MCP app is up."""

    def probe(base: str) -> bool:
        import httpx2

        try:
            response = httpx2.request(method, f"{base}{path}", json={} if method == "POST" else None, timeout=2)
        except httpx2.TransportError:
            return False
        return status is None or response.status_code == status

    return probe


def accepts_connections(base: str) -> bool:
    """A probe: something accepts TCP connections at `base`."""
    host, port = base.rsplit("/", 1)[1].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def wait_until(server: RunningServer, ready: Callable[[str], bool], timeout: float = 60) -> None:
    """Return once `ready(server.base)`; raise with the server's log if it exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if not server.alive():
            raise RuntimeError(f"{server.process.args!r} exited with {server.process.returncode}:\n{server.log()}")
        if ready(server.base):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.process.args!r} did not answer within {timeout} s:\n{server.log()}")
        time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def uvicorn(
    log_dir: Path,
    env: dict[str, str] | Callable[[str], dict[str, str]],
    *,
    app: str = APP,
    workers: int = 1,
    args: Sequence[str] = (),
    ready: Callable[[str], bool] | None = None,
    server: Callable[[str, subprocess.Popen, Path], S] = RunningServer,  # type: ignore[assignment]
    stop_signal: int = signal.SIGTERM,
    timeout: float = 60,
) -> Iterator[S]:
    """uvicorn serving `app` on a socket of its own (see the module), `workers` processes, with `env` as its whole
    environment (or `env(base_url)`, for settings that name the server's own address); yields `server(base, process,
    log_path)` once `ready(base)` (default: `/mcp` answers 401), and stops it at the end unless the test did."""
    sock = listening_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    log_path = log_dir / f"uvicorn-{sock.getsockname()[1]}.log"
    command = [sys.executable, "-m", "uvicorn", app, "--fd", str(sock.fileno())]
    if workers != 1:
        command += ["--workers", str(workers)]
    command += ["--no-access-log", "--log-level", "warning", *args]
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                pass_fds=[sock.fileno()],
                env=env(base) if callable(env) else env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    finally:
        sock.close()  # the server holds it now; the port stays its own
    running = server(base, process, log_path)
    try:
        wait_until(running, ready or answers(), timeout)
        yield running
    finally:
        running.stop(stop_signal)


class PortTaken(RuntimeError):
    pass


@contextlib.contextmanager
def serve_command(
    command: Sequence[str],
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    ready: Callable[[str], bool] = accepts_connections,
    timeout: float = 60,
    attempts: int = 3,
) -> Iterator[RunningServer]:
    """Run a server that binds a port itself: `{port}` in `command` and `PORT` in its environment name a free port.
    Yields it once `ready(base)`; if it exits saying the address is in use (another process took the port first), it
    is started again on another port."""
    for attempt in range(attempts):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log_path = log_dir / f"server-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [part.replace("{port}", str(port)) for part in command],
                env={**os.environ, **(env or {}), "PORT": str(port)},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        running = RunningServer(base, process, log_path)
        try:
            wait_until(running, ready, timeout)
        except RuntimeError:
            running.stop()
            if "EADDRINUSE" in running.log() or "address already in use" in running.log().lower():
                if attempt + 1 < attempts:
                    continue
            raise
        try:
            yield running
        finally:
            running.stop()
        return
