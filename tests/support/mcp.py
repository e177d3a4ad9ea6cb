"""The MCP bridge as tests run it: uvicorn with `hotcross.asgi:application` (`run_uvicorn`, through
`tests.support.servers`) and `manage.py mcp_server` over stdio, with the mcp SDK's clients.

Both run as subprocesses pointed at the *test* database (so tests use `transactional_db`: the server must see
committed rows). They load `tests.support.sample_tools` through HOTCROSS_MCP_TOOLS, like a product tool module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from django.db import connection, connections
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support.database import database_url
from tests.support.proxy import TcpProxy
from tests.support.servers import ROOT, RunningServer, uvicorn

SAMPLE_TOOLS = "tests.support.sample_tools"
INSPECTOR = ROOT / "node_modules" / ".bin" / "mcp-inspector"


__all__ = ["database_url"]  # servers on the test database are given it through `server_env`


FLUSH_SECONDS = 0.01
# How long the session's server (`mcp_http`) and the servers of tests that wait for a change to reach a running server
# may answer a key check from memory (HOTCROSS_KEY_CACHE_SECONDS; 1 s, the cap, by default): such a test waits out
# this memory, not a second.
KEY_MEMORY_SECONDS = 0.1


def usage_written(expected: int, timeout: float = 10.0) -> None:
    """Wait until at least `expected` usage events are in the database, and a little longer, so that a test's exact
    count is not taken while a server's last flush is still on its way (the bridge answers first, then writes)."""
    from accounts.models import UsageEvent

    deadline = time.monotonic() + timeout
    while UsageEvent.objects.count() < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(FLUSH_SECONDS * 5)


def server_env(**overrides: str) -> dict[str, str]:
    """The environment of a server or command a test starts: the bridge's test settings on the run's test database
    (`database_url`, for tests that use it) unless `DATABASE_URL` is among `overrides`, and `overrides` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HOTCROSS_", "DATABASE_"))}
    spool_dir = Path(tempfile.gettempdir()) / "hotcross-test-spools"
    spool_dir.mkdir(exist_ok=True)
    env.update(
        # Each server its own usage spool (never the checkout's var/): a stop that spools must not feed other tests.
        HOTCROSS_USAGE_SPOOL=str(spool_dir / f"{uuid.uuid4()}.jsonl"),
        DJANGO_SETTINGS_MODULE="hotcross.settings",
        DATABASE_URL=overrides["DATABASE_URL"] if "DATABASE_URL" in overrides else database_url(),
        SECRET_KEY="tests-only-mcp-bridge-server",
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        HOTCROSS_MCP_TOOLS=SAMPLE_TOOLS,
        # The bridge writes usage events a flush interval after answering (mcp_bridge.metering): keep it short here.
        HOTCROSS_MCP_METERING_FLUSH_SECONDS=str(FLUSH_SECONDS),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


# --- uvicorn ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def run_uvicorn(log_dir: Path, *, workers: int = 1, **env: str) -> Iterator[RunningServer]:
    """uvicorn serving hotcross.asgi:application on a socket of its own (`tests.support.servers.uvicorn`), with the
    bridge's test settings (`server_env`) and `env` on top."""
    with uvicorn(log_dir, server_env(**env), workers=workers) as server:
        yield server


# --- clients ------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def http_client(url: str, key: str | None, **headers: str) -> AsyncIterator[Client]:
    """The mcp SDK's client over streamable HTTP with `Authorization: Bearer <key>`."""
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


def stdio_parameters(key: str | None, **env: str) -> StdioServerParameters:
    overrides = dict(env)
    if key is not None:
        overrides["HOTCROSS_API_KEY"] = key
    return StdioServerParameters(
        command=sys.executable, args=["manage.py", "mcp_server"], env=server_env(**overrides), cwd=str(ROOT)
    )


@contextlib.asynccontextmanager
async def stdio_session(key: str | None, errlog: Any, **env: str) -> AsyncIterator[Client]:
    """The mcp SDK's client spawning `manage.py mcp_server` (its stderr goes to `errlog`)."""
    async with Client(stdio_client(stdio_parameters(key, **env), errlog=errlog)) as client:
        yield client


def mcp_error(exc: BaseException) -> MCPError:
    """The MCPError inside what a client raised (transports wrap it in exception groups)."""
    if isinstance(exc, MCPError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        with contextlib.suppress(LookupError):
            return mcp_error(inner)
    if exc.__cause__ is not None:
        return mcp_error(exc.__cause__)
    raise LookupError(f"no MCPError in {exc!r}")


async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """ORM work from inside an async test (on a thread that closes its connection afterwards)."""

    def work() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    return await anyio.to_thread.run_sync(work)


def structured(result: Any) -> Any:
    assert not result.is_error, result
    return result.structured_content


async def refused_within(call: Callable[[], Any], seconds: float) -> tuple[MCPError, float]:
    """Call `call()` until it is refused (a change made elsewhere reaches a server within its key-check memory);
    the refusal and how long it took. Fails when it still works after `seconds`."""
    started = time.monotonic()
    while True:
        try:
            await call()
        except Exception as exc:
            return mcp_error(exc), time.monotonic() - started
        assert time.monotonic() - started < seconds, f"still not refused after {seconds} s"
        await anyio.sleep(0.02)


def inspector_available() -> bool:
    """The Inspector CLI tests run in CI (CI=true makes a missing Inspector a failure) and skip elsewhere."""
    if INSPECTOR.exists() and shutil.which("node"):
        return True
    if os.environ.get("CI"):
        pytest.fail("CI is set but the MCP Inspector is not installed: run `npm ci` at the repository root.")
    return False


# --- fixtures (conftest files import the ones they use) ----------------------------------------------------------


# The session server's settings beyond `server_env`'s: short windows for tests that wait for one (a change reaching
# the server through its key-check memory; a key-check API answer's max-age, 1 s being the shortest that is cached).
MCP_HTTP_ENV = {"HOTCROSS_KEY_CACHE_SECONDS": str(KEY_MEMORY_SECONDS), "HOTCROSS_API_VERIFY_MAX_AGE": "1"}


@pytest.fixture(scope="session")
def mcp_http(django_db_setup, tmp_path_factory) -> Iterator[RunningServer]:
    """One uvicorn for the session's HTTP tests (each test brings its own developers), with `MCP_HTTP_ENV`. A test that
    reads its log reads what was written since it started (`log_since`): the server served other tests before."""
    with run_uvicorn(tmp_path_factory.mktemp("mcp-http"), **MCP_HTTP_ENV) as server:
        yield server


def log_mark(server: RunningServer) -> int:
    """Where `server`'s log ends now (bytes), for `log_since`."""
    return server.log_path.stat().st_size


def log_since(server: RunningServer, mark: int) -> str:
    """What `server` logged after `log_mark` gave `mark`."""
    with open(server.log_path, "rb") as log:
        log.seek(mark)
        return log.read().decode(errors="replace")


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    s = connection.settings_dict
    proxy = TcpProxy((s["HOST"] or "127.0.0.1", int(s["PORT"] or 5432)))
    yield proxy
    proxy.close()
