"""Real upstreams for the gateway tests: the MCP reference server (`@modelcontextprotocol/server-everything`, pinned
in package.json) and `tests/gateway/old_hotcross.py` (the old Hotcross style), over stdio and streamable HTTP, behind
real bridges (uvicorn serving hotcross.asgi, and `manage.py mcp_server`)."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.mcp_bridge.conftest import ROOT

EVERYTHING_BIN = ROOT / "node_modules" / ".bin" / "mcp-server-everything"
EVERYTHING = shlex.join([str(EVERYTHING_BIN)])
OLD_HOTCROSS_SCRIPT = ROOT / "tests" / "gateway" / "old_hotcross.py"
OLD_HOTCROSS = shlex.join([sys.executable, str(OLD_HOTCROSS_SCRIPT)])


def gateway_env(upstream: str, **overrides: str) -> dict[str, str]:
    """Environment of a bridge in gateway mode (no product tool module: only the built-ins and the upstream's)."""
    return {
        "HOTCROSS_MCP_TOOLS": "",
        "HOTCROSS_MCP_UPSTREAM": upstream,
        "HOTCROSS_MCP_UPSTREAM_TIMEOUT": "10",
        "HOTCROSS_MCP_UPSTREAM_START_TIMEOUT": "30",
        **overrides,
    }


# Skipped on a machine without `npm ci`; in CI (CI=true) a missing server fails the tests that need it.
needs_everything = pytest.mark.skipif(
    not EVERYTHING_BIN.exists() and not os.environ.get("CI"), reason="npm ci installs server-everything"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def http_upstream(command: list[str], log_dir: Path, *, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run an upstream's streamable-HTTP server; yields its URL (…/mcp) once it accepts connections."""
    port = free_port()
    log_path = log_dir / f"upstream-{port}.log"
    full_env = {**os.environ, "PORT": str(port), **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in command],
            env=full_env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"upstream exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                httpx2.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"upstream did not start:\n{log_path.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
