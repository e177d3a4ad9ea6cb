"""One connection to the upstream MCP server, with the mcp SDK's own client (`ClientSession` over
`mcp.client.stdio` or `mcp.client.streamable_http`).

A background task owns the connection (the SDK's transports must be entered and left by the same task): it starts
the upstream, answers `initialize`, reads its tool/prompt/resource lists, keeps them fresh (at once on
`notifications/*/list_changed`, and every `refresh_seconds`), and when the connection breaks (the process exited or
crashed, the HTTP server went away) starts it again after a back-off. Requests wait for a starting upstream at most
`start_timeout`, and for an answer at most `timeout`; a down upstream is refused at once until its next attempt.
Nothing here ever leaves a request waiting without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import anyio
import httpx2
from aiohttp.helpers import get_env_proxy_for_url
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    CallToolResult,
    Implementation,
    PaginatedRequestParams,
    Prompt,
    PromptListChangedNotification,
    Resource,
    ResourceListChangedNotification,
    ResourceTemplate,
    ServerCapabilities,
    Tool,
    ToolListChangedNotification,
)
from yarl import URL

from mcp_bridge.gateway.config import UpstreamConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")

# JSON-RPC error codes of the gateway (beside mcp_bridge.auth's -32001/-32002); `data.code` names them.
UPSTREAM_UNAVAILABLE = -32010
UPSTREAM_TIMEOUT = -32011
RESTART_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # back-off between attempts to (re)start a broken upstream
HEALTHY_SECONDS = 30.0  # an upstream up this long starts its back-off from the beginning when it breaks again
MAX_PAGES = 100  # of a paginated list
MAX_SSE_EVENT = 16 * 1024 * 1024  # bytes of one event of a forwarded call's SSE answer
FORWARDING_CONNECTIONS = 100  # keep-alive connections to an HTTP upstream for forwarded calls (per upstream)
STOP_SECONDS = 5.0
CLIENT_INFO = Implementation(name="hotcross-gateway", version="1")


def upstream_error(code: int, kind: str, message: str) -> MCPError:
    return MCPError(code=code, message=f"{kind}: {message}", data={"code": kind, "message": message})


def unavailable(message: str) -> MCPError:
    return upstream_error(UPSTREAM_UNAVAILABLE, "upstream_unavailable", message)


def timed_out(message: str) -> MCPError:
    return upstream_error(UPSTREAM_TIMEOUT, "upstream_timeout", message)


@dataclass
class Listing:
    """What the upstream offers, as it last said."""

    tools: dict[str, Tool] = field(default_factory=dict)
    prompts: list[Prompt] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    templates: list[ResourceTemplate] = field(default_factory=list)
    read_at: float = 0.0


class Upstream:
    """The upstream server for one scope: everyone (`organization_id` None) or one organization."""

    def __init__(self, config: UpstreamConfig, *, organization_id: uuid.UUID | None = None) -> None:
        self.config = config
        self.organization_id = organization_id
        self.state = "stopped"  # stopped, starting, up, down
        self.listing = Listing()
        self.last_error = ""
        self.starts = 0
        self.crashes = 0
        self.in_flight = 0
        self.last_used = time.monotonic()
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = anyio.Event()
        self._wake = anyio.Event()
        self._stopping = False
        self._broken: str | None = None
        self._refresh_wanted = False
        self._retry_at = 0.0
        self._retired = False  # stopped for good (idle, LRU cap, end of a probe): never started again
        # HTTP transport: the forwarding pool (aiohttp: a quarter of httpx's CPU per request; the SDK client keeps its
        # own httpx pool for initialize and the lists).
        self._http: aiohttp.ClientSession | None = None
        self._proxy: tuple[URL | None, aiohttp.BasicAuth | None] = (None, None)
        self._http_session: str | None = None  # the upstream's Mcp-Session-Id, if it gave one
        self._next_id = 0

    # --- what callers use -------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """For the server's log: which upstream (its command or URL)."""
        where = f" for organization {self.organization_id}" if self.organization_id else ""
        return f"the upstream MCP server ({self.config.describe()}){where}"

    @property
    def public_name(self) -> str:
        """For clients: no command line or URL (they may hold paths or credentials)."""
        return "the Hotcross tool server" + (" of your organization" if self.organization_id else "")

    @property
    def capabilities(self) -> ServerCapabilities | None:
        """What the connected upstream said it can do (None while it is not up)."""
        return self._session.server_capabilities if self._session is not None else None

    def status(self) -> dict[str, Any]:
        """For /healthz and `manage.py mcp_upstream`: plain values, no secrets."""
        status: dict[str, Any] = {"state": self.state, "starts": self.starts, "crashes": self.crashes}
        if self.state == "up":
            status["tools"] = len(self.listing.tools)
        if self.last_error and self.state != "up":
            status["error"] = self.last_error
        return status

    async def session(self) -> ClientSession:
        """The connected session; starts the upstream if need be. Raises `upstream_unavailable`."""
        self.last_used = time.monotonic()
        deadline = time.monotonic() + self.config.start_timeout
        self.ensure_running()
        while True:
            if self.state == "up" and self._session is not None:
                return self._session
            if self.state == "down":
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    raise unavailable(
                        f"{self.public_name} is not working ({self.last_error or 'it stopped'}); "
                        f"the bridge tries again in {wait:.0f} s. Try again then, or ask an operator to look at "
                        "its log."
                    )
                self._wake.set()  # the back-off is over: try now
            changed = self._changed
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                await changed.wait()
                continue
            raise unavailable(
                f"{self.public_name} did not start within {self.config.start_timeout:g} s "
                "(HOTCROSS_MCP_UPSTREAM_START_TIMEOUT). Try again in a moment."
            )

    async def request(self, what: str, send: Callable[[ClientSession], Awaitable[T]]) -> T:
        """`send(session)` within the per-call timeout, its failures as the gateway's clear errors.

        The upstream's own JSON-RPC errors pass through unchanged.
        """
        session = await self.session()
        self.in_flight += 1
        try:
            async with asyncio.timeout(self.config.timeout):  # anyio's fail_after cost a tenth of a forwarded call
                return await send(session)
        except TimeoutError:
            logger.warning("upstream %s did not answer within %s s", what, self.config.timeout)
            raise timed_out(
                f"{self.public_name} did not answer {what} within {self.config.timeout:g} s "
                "(HOTCROSS_MCP_UPSTREAM_TIMEOUT). Try again, or with less work."
            ) from None
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise
            self.break_connection("it closed the connection while answering (exited or crashed)")
            raise unavailable(
                f"{self.public_name} stopped while answering {what} (it exited or crashed); it is being restarted. "
                "Try again in a few seconds."
            ) from None
        except (
            httpx2.HTTPError,
            aiohttp.ClientError,
            OSError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
        ) as exc:
            self.break_connection(f"the connection failed: {exc.__class__.__name__}")
            raise unavailable(
                f"{self.public_name} could not be reached for {what}; try again in a few seconds."
            ) from None
        except Exception as exc:
            logger.warning("upstream %s answer unusable: %s", what, exc.__class__.__name__)
            raise unavailable(
                f"{self.public_name} answered {what} with something that is not a valid MCP answer."
            ) from None
        finally:
            self.in_flight -= 1
            self.last_used = time.monotonic()

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        meta: dict[str, Any],
        on_notification: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        *,
        progress: bool = False,
    ) -> CallToolResult:
        """Forward a `tools/call`; `on_notification(message)` gets what the upstream sends about it meanwhile
        (`notifications/progress` when `progress` is asked for, `notifications/message`).

        Over HTTP the request is one POST of the JSON-RPC message on the pooled keep-alive connections (see
        `_post`), not a trip through the SDK client's streams and tasks: that trip cost the bridge more CPU than the
        upstream's whole answer (bench/gateway_overhead.py).
        """
        what = f"tools/call {name!r}"
        if self.config.transport == "http":
            params = self._call_params(name, arguments, meta, progress)

            async def post(session: ClientSession) -> CallToolResult:
                return CallToolResult.model_validate(await self._post(session, "tools/call", params, on_notification))

            return await self.request(what, post)

        relay = None
        if on_notification is not None and progress:
            tell = on_notification

            async def relay(value: float, total: float | None, message: str | None) -> None:
                note = {"progress": value, "total": total, "message": message}
                await tell({"method": "notifications/progress", "params": note})

        return await self.request(
            what,
            lambda session: session.call_tool(name, arguments, meta=meta, progress_callback=relay),  # type: ignore[arg-type]
        )

    async def call_tool_json(self, name: str, arguments: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        """An HTTP upstream's `tools/call` result as it sent it (a dict with a `content` list), for the direct
        forwarding of `mcp_bridge.gateway.direct`; failures as `call_tool`'s. Nothing the upstream says meanwhile
        is passed on (a stateless JSON answer has no room for it)."""
        params = self._call_params(name, arguments, meta, progress=False)

        async def post(session: ClientSession) -> dict[str, Any]:
            result = await self._post(session, "tools/call", params, None)
            if not isinstance(result.get("content"), list):
                raise ValueError("a tools/call result without content")
            return result

        return await self.request(f"tools/call {name!r}", post)

    def _call_params(
        self, name: str, arguments: dict[str, Any], meta: dict[str, Any], progress: bool
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name, "arguments": arguments, "_meta": meta}
        if progress:
            self._next_id += 1
            params["_meta"] = {**meta, "progressToken": f"hotcross-progress-{self._next_id}"}
        return params

    async def _post(
        self,
        session: ClientSession,
        method: str,
        params: dict[str, Any],
        on_notification: Callable[[dict[str, Any]], Awaitable[None]] | None,
    ) -> dict[str, Any]:
        """One JSON-RPC request by POST (streamable HTTP): its result, or its error raised as `MCPError`. The answer
        may be JSON or an SSE stream; notifications in the stream go to `on_notification`."""
        http = self._http
        if http is None:
            raise aiohttp.ClientConnectionError("not connected")
        self._next_id += 1
        request_id = f"hotcross-{self._next_id}"
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode()
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if session.protocol_version:
            headers["mcp-protocol-version"] = session.protocol_version
        if self._http_session:
            headers["mcp-session-id"] = self._http_session
        proxy, proxy_auth = self._proxy
        async with http.post(
            self.config.url, data=body, headers=headers, proxy=proxy, proxy_auth=proxy_auth
        ) as response:
            if response.status == 404 and self._http_session:
                self.break_connection("it no longer knows the session (HTTP 404)")
                raise aiohttp.ClientConnectionError("session gone")
            kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if kind == "text/event-stream":
                async for message in _sse_messages(response):
                    if message.get("id") == request_id and ("result" in message or "error" in message):
                        return _answer(message)
                    if "id" not in message and isinstance(message.get("method"), str) and on_notification:
                        await on_notification(message)
                raise ValueError("the event stream ended without an answer")
            answer = json.loads(await response.read())
            if not isinstance(answer, dict) or answer.get("id") != request_id:
                raise ValueError(f"HTTP {response.status} without the answer")
            return _answer(answer)

    def ensure_running(self) -> None:
        if self._retired:
            raise unavailable(f"{self.public_name} was just stopped (idle); try again.")
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"hotcross upstream {self.name}")

    def break_connection(self, reason: str) -> None:
        """The connection is unusable: the background task closes it and starts the upstream again."""
        if self._broken is None:
            self._broken = reason
        self._wake.set()

    def refresh_soon(self) -> None:
        self._refresh_wanted = True
        self._wake.set()

    async def stop(self) -> None:
        """Stop the upstream (its process, or the HTTP session) for good and wait for it, a bounded time."""
        self._retired = True
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=STOP_SECONDS)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait({task}, timeout=STOP_SECONDS)

    # --- the background task --------------------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._broken = None
            self._wake = anyio.Event()
            self._set_state("starting")
            up_since: float | None = None
            try:
                async with self._connected() as session:
                    self._session = session
                    self.starts += 1
                    up_since = self.last_used = time.monotonic()  # idle from now, not from the request that started it
                    self._set_state("up")
                    logger.info("%s is up (%s tools)", self.name, len(self.listing.tools))
                    await self._watch(session)
                if self._broken:
                    self.last_error = self._broken
            except Exception as exc:
                self.last_error = self._failure(exc)
            finally:
                self._session = None
            if self._stopping:
                break
            if up_since is not None:
                self.crashes += 1
                if time.monotonic() - up_since > HEALTHY_SECONDS:
                    failures = 0
            wait = RESTART_SECONDS[min(failures, len(RESTART_SECONDS) - 1)]
            failures += 1
            self._retry_at = time.monotonic() + wait
            self._set_state("down")
            logger.warning("%s is down (%s); next attempt in %s s", self.name, self.last_error, wait)
            self._wake = anyio.Event()
            with anyio.move_on_after(wait):
                await self._wake.wait()
        self._set_state("stopped")

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[ClientSession]:
        async with contextlib.AsyncExitStack() as stack:
            if self.config.transport == "http":
                self._http_session = None

                async def note_session(response: httpx2.Response) -> None:
                    self._http_session = response.headers.get("mcp-session-id") or self._http_session

                timeout = httpx2.Timeout(self.config.timeout, connect=min(10.0, self.config.start_timeout))
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=self.config.headers, timeout=timeout, event_hooks={"response": [note_session]}
                    )
                )
                forwarding = await stack.enter_async_context(
                    aiohttp.ClientSession(
                        headers=self.config.headers,
                        timeout=aiohttp.ClientTimeout(sock_connect=min(10.0, self.config.start_timeout)),
                        connector=aiohttp.TCPConnector(limit=FORWARDING_CONNECTIONS),
                    )
                )
                self._proxy = _env_proxy(self.config.url)
                stack.callback(setattr, self, "_http", None)
                read, write = await stack.enter_async_context(streamable_http_client(self.config.url, http_client=http))
                self._http = forwarding
            else:
                # The upstream's stderr is the server's (its log): what it says when it fails is there.
                read, write = await stack.enter_async_context(stdio_client(self._parameters(), errlog=_stderr()))
            session = await stack.enter_async_context(
                ClientSession(read, write, message_handler=self._on_message, client_info=CLIENT_INFO)
            )
            with anyio.fail_after(self.config.start_timeout):
                await session.initialize()
                await self._read_lists(session)
            yield session

    def _parameters(self) -> StdioServerParameters:
        env = {**get_default_environment(), **self.config.env}
        cwd = None
        if self.organization_id is not None:
            data_dir = self.config.data_dir / str(self.organization_id)
            data_dir.mkdir(parents=True, exist_ok=True)
            env["HOTCROSS_ORGANIZATION_ID"] = str(self.organization_id)
            env["HOTCROSS_DATA_DIR"] = str(data_dir.resolve())
            cwd = str(data_dir)
        program, *args = self.config.command
        return StdioServerParameters(command=program, args=args, env=env, cwd=cwd)

    async def _watch(self, session: ClientSession) -> None:
        """Until the connection breaks or the upstream is stopped: keep the lists fresh."""
        while not (self._stopping or self._broken):
            with anyio.move_on_after(self.config.refresh_seconds):
                await self._wake.wait()
            if self._stopping or self._broken:
                return
            self._wake = anyio.Event()
            self._refresh_wanted = False
            try:
                with anyio.fail_after(self.config.timeout):
                    await self._read_lists(session)
            except TimeoutError:
                logger.warning("%s did not list its tools within %s s", self.name, self.config.timeout)
            except MCPError as exc:
                if exc.code == CONNECTION_CLOSED:
                    self._broken = "it closed the connection (exited or crashed)"
                else:
                    logger.warning("%s refused to list its tools: %s", self.name, exc.code)
            except Exception as exc:
                self._broken = f"listing its tools failed: {exc.__class__.__name__}"

    async def _read_lists(self, session: ClientSession) -> None:
        capabilities = session.server_capabilities
        listing = Listing(read_at=time.monotonic())
        tools = await _all_pages(session.list_tools, "tools") if capabilities and capabilities.tools else []
        listing.tools = {tool.name: tool for tool in tools}
        if capabilities and capabilities.prompts:
            listing.prompts = await _all_pages(session.list_prompts, "prompts")
        if capabilities and capabilities.resources:
            listing.resources = await _all_pages(session.list_resources, "resources")
            listing.templates = await _all_pages(session.list_resource_templates, "resource_templates")
        self.listing = listing

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(
            message, ToolListChangedNotification | PromptListChangedNotification | ResourceListChangedNotification
        ):
            self.refresh_soon()
        elif isinstance(message, Exception):
            logger.warning("%s sent something that is not MCP: %s", self.name, message.__class__.__name__)

    def _failure(self, exc: BaseException) -> str:
        exc = _innermost(exc)
        if isinstance(exc, TimeoutError):
            return f"it did not answer initialize within {self.config.start_timeout:g} s"
        if isinstance(exc, FileNotFoundError):
            logger.warning("%s: %s", self.name, exc)
            return "its command was not found (HOTCROSS_MCP_UPSTREAM)"
        if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
            return "it exited before it answered initialize"
        if isinstance(exc, MCPError):
            return f"it refused initialize ({exc.code})"
        logger.warning("%s could not be started or reached: %r", self.name, exc)
        return f"it could not be started or reached ({exc.__class__.__name__})"


def _stderr() -> Any:
    """The process's stderr as a file a child can inherit (under a test runner's capture, the original one)."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.__stderr__
    return sys.stderr


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _answer(message: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC response's result; its error as `MCPError` (passed to the client unchanged)."""
    error = message.get("error")
    if isinstance(error, dict):
        code, text = error.get("code"), error.get("message")
        if not isinstance(code, int) or not isinstance(text, str):
            raise ValueError("a malformed JSON-RPC error")
        raise MCPError(code=code, message=text, data=error.get("data"))
    result = message.get("result")
    if not isinstance(result, dict):
        raise ValueError("a JSON-RPC response without a result")
    return result


def _env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy (and its credentials) that HTTP(S)_PROXY / NO_PROXY give for `url`, as the SDK's httpx client reads
    them; (None, None) for none. Read once per connection: aiohttp's `trust_env` reads them and ~/.netrc on a thread
    for every request, and those two thread hops halved the gateway's throughput (bench/gateway_overhead.py)."""
    with contextlib.suppress(LookupError):
        return get_env_proxy_for_url(URL(url))
    return None, None


async def _sse_messages(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC messages of an SSE answer (each event's `data` lines joined; events without data, such as the
    priming event of a resumable stream, skipped)."""
    data: list[str] = []
    size = 0
    while raw := await response.content.readline(max_line_length=MAX_SSE_EVENT + 64):
        line = raw.decode().rstrip("\r\n")
        if not line:
            text, data, size = "\n".join(data), [], 0
            if text.strip():
                message = json.loads(text)
                if isinstance(message, dict):
                    yield message
            continue
        if line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
            size += len(value)
            if size > MAX_SSE_EVENT:
                raise ValueError("an event larger than the bridge accepts")
    if "".join(data).strip():
        message = json.loads("\n".join(data))
        if isinstance(message, dict):
            yield message


async def _all_pages(fetch: Callable[..., Awaitable[Any]], attribute: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        result = await fetch(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        items.extend(getattr(result, attribute))
        cursor = result.next_cursor
        if not cursor:
            break
    return items


async def probe(config: UpstreamConfig) -> Listing:
    """Start the upstream once, read what it offers, stop it (for `manage.py check` and `manage.py mcp_upstream`).

    An organization-scoped upstream is started as for a placeholder organization (the nil UUID) in a temporary data
    folder. Raises `upstream_unavailable` / `upstream_timeout` as a call would.
    """
    with tempfile.TemporaryDirectory(prefix="hotcross-upstream-probe-") as scratch:
        organization_id = None
        if config.scope == "organization":
            organization_id = uuid.UUID(int=0)
            config = dataclasses.replace(config, data_dir=Path(scratch))
        upstream = Upstream(config, organization_id=organization_id)
        try:
            await upstream.session()
            return upstream.listing
        finally:
            await upstream.stop()
