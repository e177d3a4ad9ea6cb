"""Real upstreams for the gateway tests: the MCP reference server (`@modelcontextprotocol/server-everything`, pinned
in package.json) and `tests/gateway/old_hotcross.py` (the old Hotcross style), over stdio and streamable HTTP, behind
real bridges (uvicorn serving hotcross.asgi, and `manage.py mcp_server`)."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import ROOT, answers, serve_command

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


@contextlib.contextmanager
def http_upstream(command: list[str], log_dir: Path, *, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run an upstream's streamable-HTTP server (`{port}` in `command` and `PORT` name its port:
    `tests.support.servers.serve_command`); yields its URL (…/mcp) once it accepts connections."""
    with serve_command(command, log_dir, env=env, ready=answers("/", method="GET", status=None)) as server:
        yield f"{server.base}/mcp"
