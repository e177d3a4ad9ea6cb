"""A bridge process's view of the upstreams the supervisor (`upstream.supervisor`) runs: `SupervisedPool` and
`SupervisedUpstream`, used exactly like `UpstreamPool` and `Upstream` (the gateway cannot tell), each call one request
to the supervisor over its Unix socket.

The pool starts the supervisor when none answers (a detached process: it outlives the bridge process that started
it, for the others, and ends on its own once no bridge is attached) and stays attached to it (`GET /events`), which
also says when an upstream's lists changed: a connection asks the supervisor for its lists only then, so a call is
one round trip on the socket. When the supervisor goes away, the next request starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CallToolResult,
    CompleteResult,
    GetPromptResult,
    Prompt,
    PromptReference,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    ResourceTemplateReference,
    ServerCapabilities,
    Tool,
)

from upstream.config import UpstreamConfig
from upstream.connection import State
from upstream.errors import unavailable
from upstream.listing import Listing
from upstream.supervisor import CONFIG_ENV, encode_config, socket_path

logger = logging.getLogger(__name__)

Notify = Callable[[dict[str, Any]], Awaitable[None]]
BASE = "http://supervisor"
MAX_MESSAGE = 64 * 1024 * 1024  # bytes of one answer line from the supervisor
SPAWN_SECONDS = 20.0  # how long a bridge waits for the supervisor it started to answer
_pending: set[asyncio.Task[None]] = set()  # listeners told of a change, until they are done


class SupervisedUpstream:
    """One scope's upstream (everyone's, or one organization's) as the supervisor runs it."""

    def __init__(self, pool: SupervisedPool, organization_id: str | None) -> None:
        self.pool = pool
        self.config = pool.config
        self.organization_id = organization_id
        self.state = State.STOPPED
        self.listing = Listing()
        self.capabilities: ServerCapabilities | None = None
        self.public_name = pool.config.name + (" of your organization" if organization_id else "")
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.version: int | None = None  # of the lists held here; None: ask the supervisor
        self.fresh = False  # the supervisor said "up" and nothing changed since
        self.modern_tools: dict[str, Tool] = {}  # never filled: no 2026-07-28 forwarding (`serves_modern`)
        self.on_list_changed: list[Callable[[str], Awaitable[None]]] = []  # as `Upstream`'s
        self.modern_prompts: dict[str, Prompt] = {}

    @property
    def name(self) -> str:
        where = f" for organization {self.organization_id}" if self.organization_id else ""
        return f"the upstream MCP server ({self.config.describe()}, supervised){where}"

    async def session(self) -> None:
        """The upstream started and its lists known here; raises `upstream_unavailable` as `Upstream.session`."""
        self.last_used = time.monotonic()
        if self.fresh and self.pool.attached:
            return
        answer = await self.pool.post("/session", {"key": self.organization_id}, self.config.start_timeout + 5)
        if "error" in answer:
            self.state = State.DOWN
            raise _error(answer["error"])
        self.state = State(answer["state"])
        if answer["version"] != self.version:
            self.listing = _listing(answer["listing"])
            caps = answer.get("capabilities")
            self.capabilities = ServerCapabilities.model_validate(caps) if caps is not None else None
            self.version = answer["version"]
        self.fresh = self.state is State.UP

    def changed(self, version: int) -> None:
        if version != self.version:
            self.fresh = False
            # The supervisor does not say which list: every listener hears of each (the lists are read again at
            # the next request, `session`).
            for kind in ("tools", "prompts", "resources"):
                for listener in list(self.on_list_changed):
                    task = asyncio.get_running_loop().create_task(listener(kind))
                    _pending.add(task)
                    task.add_done_callback(_pending.discard)

    async def _request(self, method: str, params: dict[str, Any], notify: Notify | None, progress: bool) -> Any:
        self.in_flight += 1
        try:
            return await self.pool.forward(self, method, params, notify, progress)
        finally:
            self.in_flight -= 1
            self.last_used = time.monotonic()

    # A stdio upstream is reached in the handshake era only, and what it asks a client (sampling, elicitation) comes
    # outside any call's stream (stdio has none), so the bridge cannot say whose call it is: `Upstream`'s refusal.
    serves_modern = False

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        meta: dict[str, Any],
        on_notification: Notify | None = None,
        *,
        progress: bool = False,
        on_request: Any = None,
    ) -> CallToolResult:
        """`Upstream.call_tool` through the supervisor (`on_request` is not used: see `serves_modern`)."""
        params = {"name": name, "arguments": arguments, "_meta": meta}
        return CallToolResult.model_validate(await self._request("tools/call", params, on_notification, progress))

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None, meta: dict[str, Any]) -> GetPromptResult:
        params = {"name": name, "arguments": arguments, "_meta": meta}
        return GetPromptResult.model_validate(await self._request("prompts/get", params, None, False))

    async def read_resource(self, uri: str, meta: dict[str, Any]) -> ReadResourceResult:
        params = {"uri": uri, "_meta": meta}
        return ReadResourceResult.model_validate(await self._request("resources/read", params, None, False))

    async def complete(
        self,
        ref: PromptReference | ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
        meta: dict[str, Any] | None = None,
    ) -> CompleteResult:
        params: dict[str, Any] = {"ref": ref.model_dump(mode="json", by_alias=True), "argument": argument}
        if context_arguments is not None:
            params["context"] = {"arguments": context_arguments}
        if meta:
            params["_meta"] = meta
        return CompleteResult.model_validate(await self._request("completion/complete", params, None, False))

    def ensure_running(self) -> None:
        self.pool.ensure_attached()

    def status(self) -> dict[str, Any]:
        return self.pool.status()

    async def stop(self) -> None:
        """Nothing to stop here: the supervisor stops its upstreams (idle, cap, its own end)."""


class SupervisedPool:
    """The upstreams of `config` through its supervisor, for one event loop of a bridge process."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.socket = socket_path(config)
        self.attached = False
        self._upstreams: dict[str | None, SupervisedUpstream] = {}
        self._http: aiohttp.ClientSession | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._spawn_lock = asyncio.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._warming: asyncio.Task[None] | None = None

    @property
    def per_organization(self) -> bool:
        return self.config.scope == "organization"

    def upstreams(self) -> list[SupervisedUpstream]:
        return list(self._upstreams.values())

    async def upstream_for(self, organization_id: str | None) -> SupervisedUpstream:
        key = organization_id if self.per_organization else None
        upstream = self._upstreams.get(key)
        if upstream is None:
            upstream = self._upstreams[key] = SupervisedUpstream(self, key)
        self.ensure_attached()
        return upstream

    # --- the supervisor ---------------------------------------------------------------------------------------------

    def ensure_attached(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._attach(), name="hotcross supervisor events")

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket), limit=100), timeout=aiohttp.ClientTimeout()
            )
        return self._http

    async def _spawn(self) -> None:
        """Start a supervisor unless one answers (several bridge processes may try at once: its lock lets one run)
        and wait until it answers."""
        async with self._spawn_lock:
            if await self._answers():
                return
            self.socket.parent.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + SPAWN_SECONDS
            while time.monotonic() < deadline:
                if self._child is None or self._child.poll() is not None:
                    # None started yet, or the one started here ended: it lost the lock to another that is starting
                    # (answers soon) or still stopping (gone soon: then this one runs).
                    self._child = self._start_supervisor()
                await asyncio.sleep(0.05)
                if await self._answers():
                    return
            raise unavailable("the upstream supervisor did not start; ask an operator to look at the server's log.")

    def _start_supervisor(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "upstream.supervisor", str(self.socket)],
            env={**os.environ, CONFIG_ENV: encode_config(self.config)},
            cwd=os.getcwd(),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not stopped with this process's group: other bridges use it
        )

    async def _answers(self) -> bool:
        try:
            async with self._client().get(f"{BASE}/status", timeout=aiohttp.ClientTimeout(total=5)) as response:
                return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def _attach(self) -> None:
        """Stay attached (the supervisor lives while bridges are) and hear which lists changed; reattach (starting a
        supervisor if need be) when the stream ends."""
        failures = 0
        while True:
            try:
                await self._spawn()
                async with self._client().get(f"{BASE}/events") as response:
                    self.attached = True
                    failures = 0
                    async for line in response.content:
                        event = json.loads(line) if line.strip() else {}
                        upstream = self._upstreams.get(event.get("key")) if "version" in event else None
                        if upstream is not None:
                            upstream.changed(event["version"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("upstream supervisor unreachable: %s", exc.__class__.__name__)
            self.attached = False
            for upstream in self._upstreams.values():
                upstream.fresh = False
            failures += 1
            await asyncio.sleep(min(0.05 * 2**failures, 2.0))

    async def post(self, path: str, body: dict[str, Any], timeout: float, *, spawn: bool = True) -> dict[str, Any]:
        """`body` to the supervisor's `path`, its JSON answer; a supervisor that does not answer is started (unless
        `spawn` is false) and asked again. Raises `upstream_unavailable`."""
        for attempt in range(2 if spawn else 1):
            try:
                async with self._client().post(
                    f"{BASE}{path}", json=body, timeout=aiohttp.ClientTimeout(total=timeout)
                ) as response:
                    return await response.json()
            except (aiohttp.ClientConnectionError, OSError):
                if attempt or not spawn:
                    raise unavailable(
                        "the upstream supervisor cannot be reached; try again in a few seconds."
                    ) from None
                await self._spawn()
            except TimeoutError:
                raise unavailable("the upstream supervisor did not answer in time; try again.") from None
        raise AssertionError("unreachable")

    async def forward(
        self, upstream: SupervisedUpstream, method: str, params: dict[str, Any], notify: Notify | None, progress: bool
    ) -> Any:
        body = {"key": upstream.organization_id, "method": method, "params": params, "progress": progress}
        timeout = aiohttp.ClientTimeout(total=self.config.timeout + self.config.start_timeout + 5)
        try:
            async with self._client().post(f"{BASE}/request", json=body, timeout=timeout) as response:
                while line := await response.content.readline(max_line_length=MAX_MESSAGE):
                    message = json.loads(line)
                    if "notification" in message:
                        if notify is not None:
                            await notify(message["notification"])
                    elif "result" in message or "error" in message:
                        # The rest of the stream (its last chunk) read before the connection goes back to the pool:
                        # a response left unread is closed, and the next request would open a new connection.
                        await response.read()
                        if "error" in message:
                            raise _error(message["error"])
                        return message["result"]
        except (aiohttp.ClientError, OSError):
            upstream.fresh = False
            raise unavailable(
                f"{upstream.public_name} could not be reached for {method} (its supervisor went away); "
                "try again in a few seconds."
            ) from None
        except TimeoutError:
            raise unavailable(f"{upstream.public_name} did not answer {method} in time; try again.") from None
        upstream.fresh = False
        raise unavailable(f"{upstream.public_name} stopped while answering {method}; try again in a few seconds.")

    async def start(self) -> None:
        """A bridge's start: attached to the supervisor (started if need be), the shared upstream started."""
        self.ensure_attached()
        if not self.per_organization:
            shared = await self.upstream_for(None)

            async def warm() -> None:
                with contextlib.suppress(MCPError):
                    await shared.session()

            # In the background, as `UpstreamPool.start` does: the server answers meanwhile.
            self._warming = asyncio.get_running_loop().create_task(warm(), name="hotcross supervised upstream start")

    async def close(self) -> None:
        if self.attached:
            with contextlib.suppress(MCPError):
                await self.post("/leaving", {}, 2.0, spawn=False)
        if self._warming is not None:
            self._warming.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
        if self._http is not None:
            await self._http.close()
        if self._child is not None:
            self._child.poll()

    def status(self) -> dict[str, Any]:
        """The supervisor's status of the pool (a blocking request: for /healthz's thread)."""
        try:
            connection = _UnixConnection(str(self.socket), timeout=3)
            connection.request("GET", "/status")
            answer = json.loads(connection.getresponse().read())
            connection.close()
            return answer
        except (OSError, ValueError, http.client.HTTPException):
            status: dict[str, Any] = {"transport": "stdio", "scope": self.config.scope}
            status.update(state=State.DOWN.value, error="the upstream supervisor is not running")
            return status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("supervisor", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _error(error: dict[str, Any]) -> MCPError:
    return MCPError(code=int(error["code"]), message=str(error["message"]), data=error.get("data"))


def _listing(values: dict[str, Any]) -> Listing:
    tools = [Tool.model_validate(tool) for tool in values.get("tools", [])]
    return Listing(
        tools={tool.name: tool for tool in tools},
        prompts=[Prompt.model_validate(prompt) for prompt in values.get("prompts", [])],
        resources=[Resource.model_validate(resource) for resource in values.get("resources", [])],
        templates=[ResourceTemplate.model_validate(template) for template in values.get("templates", [])],
        read_at=time.monotonic(),
    )


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SupervisedPool] = weakref.WeakKeyDictionary()


def loop_pool(config: UpstreamConfig) -> SupervisedPool:
    """The running event loop's supervised pool of `config` (a new one when the config changed)."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None or (found.config is not config and found.config != config):
        found = _pools[loop] = SupervisedPool(config)
    return found


def statuses() -> list[dict[str, Any]]:
    """The supervisor's status for each supervised pool of this process (for a health check, on another thread)."""
    for _attempt in range(3):
        with contextlib.suppress(RuntimeError):
            return [found.status() for found in list(_pools.values())]
    return []


async def close_loop_pool() -> None:
    with contextlib.suppress(RuntimeError):
        found = _pools.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.close()
