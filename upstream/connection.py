"""One connection to the upstream MCP server, with the mcp SDK's own client (`ClientSession` over
`mcp.client.stdio` or `mcp.client.streamable_http`).

A background task owns the connection (the SDK's transports must be entered and left by the same task): it starts
the upstream, answers `initialize`, reads its tool/prompt/resource lists, keeps them fresh (at once on
`notifications/*/list_changed`, and every `refresh_seconds`), and when the connection breaks (the process exited or
crashed, the HTTP server went away) starts it again after a back-off. Requests wait for a starting upstream at most
`start_timeout`, and for an answer at most `timeout`; a down upstream is refused at once until its next attempt.
Nothing here ever leaves a request waiting without a bound. Over HTTP a forwarded `tools/call` skips the SDK
client: it is one POST on the connection's own pool (`upstream.rpc.HttpPoster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import anyio
import httpx2
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    INVALID_REQUEST,
    CallToolResult,
    CompleteResult,
    EmptyResult,
    ErrorData,
    GetPromptResult,
    Implementation,
    Prompt,
    PromptListChangedNotification,
    PromptReference,
    ReadResourceResult,
    ResourceListChangedNotification,
    ResourceTemplateReference,
    ResourceUpdatedNotification,
    ServerCapabilities,
    Tool,
    ToolListChangedNotification,
)
from pydantic import BaseModel

from upstream import sandbox
from upstream.assertion import Asserter, AssertionKeyError
from upstream.config import UpstreamConfig
from upstream.errors import timed_out, unavailable
from upstream.listing import Listing, read_listing
from upstream.rpc import Ask, HttpPoster, Notify, SessionLost

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)

RESTART_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # back-off between attempts to (re)start a broken upstream
HEALTHY_SECONDS = 30.0  # an upstream up this long starts its back-off from the beginning when it breaks again
STOP_SECONDS = 5.0
CLIENT_INFO = Implementation(name="hotcross-gateway", version="1")


class State(enum.StrEnum):
    """Where a connection is; its value is the word /healthz and the log say."""

    STOPPED = "stopped"  # not started yet, or stopped for good
    STARTING = "starting"  # the process or the HTTP session is being started and initialized
    UP = "up"  # answering
    DOWN = "down"  # broken: the next attempt is after a back-off


class Upstream:
    """The upstream server for one scope: everyone (`organization_id` None) or one organization (its id, a string:
    the process gets it as `HOTCROSS_ORGANIZATION_ID` and a data folder of its own)."""

    def __init__(self, config: UpstreamConfig, *, organization_id: str | None = None) -> None:
        self.config = config
        self.organization_id = organization_id
        self.state = State.STOPPED
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
        # HTTP transport: the forwarding pool of the connection that is up (aiohttp: a quarter of httpx's CPU per
        # request; the SDK client keeps its own httpx pool for initialize and the lists).
        self._poster: HttpPoster | None = None
        self._progress_tokens = itertools.count(1)
        # HTTP: this organization's URL (the template's) or the one URL, and the signer of the caller's assertion.
        self.url = config.url_for(organization_id) if config.transport == "http" else ""
        self._asserter: Asserter | None = None
        self._session_lost = False  # the HTTP session is gone (the upstream restarted): reconnect without a back-off
        self.failing = 0  # answers in a row that were not valid MCP (the connection is kept; /healthz says so)
        # What it last listed to a 2026-07-28 client (it may offer that revision more), by name.
        self.modern_tools: dict[str, Tool] = {}
        self.modern_prompts: dict[str, Prompt] = {}
        # Who hears of `notifications/resources/updated` (the URI) and of lists that changed ("tools", "prompts",
        # "resources"; once the new lists are read): the bridge's subscriptions.
        self.on_resource_updated: list[Callable[[str], Awaitable[None]]] = []
        self.on_list_changed: list[Callable[[str], Awaitable[None]]] = []

    # --- what callers use -------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """For the server's log: which upstream (its command or URL)."""
        where = f" for organization {self.organization_id}" if self.organization_id else ""
        return f"the upstream MCP server ({self.config.describe()}){where}"

    @property
    def public_name(self) -> str:
        """For clients: no command line or URL (they may hold paths or credentials)."""
        return self.config.name + (" of your organization" if self.organization_id else "")

    @property
    def capabilities(self) -> ServerCapabilities | None:
        """What the connected upstream said it can do (None while it is not up)."""
        return self._session.server_capabilities if self._session is not None else None

    def status(self) -> dict[str, Any]:
        """For /healthz and `manage.py mcp_upstream`: plain values, no secrets."""
        status: dict[str, Any] = {"state": self.state.value, "starts": self.starts, "crashes": self.crashes}
        if self.state is State.UP:
            status["tools"] = len(self.listing.tools)
            if self.failing:  # connected, but what callers get is an error
                status.update(state="failing", failing=self.failing, error=self.last_error)
        if self.last_error and self.state is not State.UP:
            status["error"] = self.last_error
        return status

    async def session(self) -> ClientSession:
        """The connected session; starts the upstream if need be. Raises `upstream_unavailable`."""
        self.last_used = time.monotonic()
        deadline = time.monotonic() + self.config.start_timeout
        self.ensure_running()
        while True:
            if self.state is State.UP and self._session is not None:
                return self._session
            if self.state is State.DOWN:
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    raise unavailable(
                        f"{self.public_name} is not working ({self.last_error or 'it stopped'}); "
                        f"the bridge tries again {_in(wait)}. Try again then, or ask an operator to look at its log."
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

    async def request(self, what: str, send: Callable[[ClientSession], Awaitable[T]], *, timed: bool = True) -> T:
        """`send(session)` within the per-call timeout (`timed=False`: none, for a stream that lasts as long as its
        client wants), its failures as the gateway's clear errors.

        The upstream's own JSON-RPC errors pass through unchanged. A request an HTTP upstream refused because it no
        longer knows the session (it restarted: `upstream.rpc.SessionLost`) was not served: it is sent once more on
        the new session, made at once.
        """
        session = await self.session()
        self.in_flight += 1
        try:
            # anyio's fail_after cost a tenth of a forwarded call
            async with asyncio.timeout(self.config.timeout if timed else None):
                try:
                    answer = await send(session)
                except SessionLost:
                    session = await self.session()
                    answer = await send(session)
            self.failing = 0
            return answer
        except TimeoutError:
            logger.warning("upstream %s did not answer within %s s", what, self.config.timeout)
            raise timed_out(
                f"{self.public_name} did not answer {what} within {self.config.timeout:g} s "
                "(HOTCROSS_MCP_UPSTREAM_TIMEOUT). Try again, or with less work."
            ) from None
        except MCPError as exc:
            # The SDK says "connection closed" with -32000, a code an upstream may answer with too (an embedded
            # database's "invalid query"): only the transport's own state tells the two apart.
            if exc.code != CONNECTION_CLOSED or not transport_closed(session):
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
            self.failing += 1
            self.last_error = f"its answers are not valid MCP ({exc.__class__.__name__})"
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
        on_notification: Notify | None = None,
        *,
        progress: bool = False,
        on_request: Ask | None = None,
    ) -> CallToolResult:
        """Forward a `tools/call`; `on_notification(message)` gets what the upstream sends about it meanwhile
        (`notifications/progress` when `progress` is asked for, `notifications/message`); `on_request(message)`
        answers what an HTTP upstream asks meanwhile (sampling, elicitation, roots).

        Over HTTP the request is one POST of the JSON-RPC message on the pooled keep-alive connections
        (`upstream.rpc.HttpPoster`), not a trip through the SDK client's streams and tasks: that trip cost the bridge
        more CPU than the upstream's whole answer (bench/gateway_overhead.py).
        """
        what = f"tools/call {name!r}"
        if self.config.transport == "http":
            params = self._call_params(name, arguments, meta, progress)

            async def post(_session: ClientSession) -> CallToolResult:
                answer = await self._post("tools/call", params, on_notification, on_request=on_request)
                return CallToolResult.model_validate(answer)

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

    async def call_tool_json(
        self,
        name: str,
        arguments: dict[str, Any],
        meta: dict[str, Any],
        on_notification: Notify | None = None,
        on_request: Ask | None = None,
    ) -> dict[str, Any]:
        """An HTTP upstream's `tools/call` result as it sent it (a dict with a `content` list), for a caller that
        passes it on as it is (the bridge's direct forwarding); failures as `call_tool`'s. What the upstream says
        meanwhile goes to `on_notification`, if given."""
        params = self._call_params(name, arguments, meta, progress=False)

        async def post(_session: ClientSession) -> dict[str, Any]:
            result = await self._post("tools/call", params, on_notification, on_request=on_request)
            if not isinstance(result.get("content"), list):
                raise ValueError("a tools/call result without content")
            return result

        return await self.request(f"tools/call {name!r}", post)

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None, meta: dict[str, Any]) -> GetPromptResult:
        """Forward a `prompts/get`; failures as `request`'s."""
        what = f"prompts/get {name!r}"
        if self.config.transport == "http":
            params = {"name": name, "arguments": arguments or {}, "_meta": meta}
            return await self._post_request(what, "prompts/get", params, GetPromptResult)
        return await self.request(what, lambda session: session.get_prompt(name, arguments, meta=meta))

    async def read_resource(self, uri: str, meta: dict[str, Any]) -> ReadResourceResult:
        """Forward a `resources/read`; failures as `request`'s."""
        what = f"resources/read {uri!r}"
        if self.config.transport == "http":
            return await self._post_request(what, "resources/read", {"uri": uri, "_meta": meta}, ReadResourceResult)
        return await self.request(what, lambda session: session.read_resource(uri, meta=meta))

    async def subscribe(self, uri: str, meta: dict[str, Any]) -> None:
        """`resources/subscribe` of the upstream (updates go to `on_resource_updated`); failures as `request`'s."""
        await self._subscription("resources/subscribe", uri, meta, lambda s: s.subscribe_resource(uri, meta=meta))

    async def unsubscribe(self, uri: str, meta: dict[str, Any]) -> None:
        """`resources/unsubscribe` of the upstream; failures as `request`'s."""
        await self._subscription("resources/unsubscribe", uri, meta, lambda s: s.unsubscribe_resource(uri, meta=meta))

    async def _subscription(
        self, method: str, uri: str, meta: dict[str, Any], over_stdio: Callable[[ClientSession], Awaitable[Any]]
    ) -> None:
        what = f"{method} {uri!r}"
        if self.config.transport == "http":
            await self._post_request(what, method, {"uri": uri, "_meta": meta}, EmptyResult)
        else:
            await self.request(what, over_stdio)

    async def complete(
        self,
        ref: PromptReference | ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
        meta: dict[str, Any] | None = None,
    ) -> CompleteResult:
        """Forward a `completion/complete`; failures as `request`'s. `meta` (the caller) goes to an HTTP upstream, in
        `_meta` and signed; the SDK's client sends no `_meta` with a completion (stdio)."""
        if self.config.transport == "http":
            params: dict[str, Any] = {"ref": ref.model_dump(by_alias=True, exclude_none=True), "argument": argument}
            if meta:
                params["_meta"] = meta
            if context_arguments is not None:
                params["context"] = {"arguments": context_arguments}
            return await self._post_request("completion/complete", "completion/complete", params, CompleteResult)
        return await self.request(
            "completion/complete",
            lambda session: session.complete(ref, argument, context_arguments=context_arguments),
        )

    async def _post_request(self, what: str, method: str, params: dict[str, Any], result: type[R]) -> R:
        """An HTTP upstream's request by POST on the forwarding pool (as `tools/call`), its result validated."""

        async def post(_session: ClientSession) -> R:
            return result.model_validate(await self._post(method, params, None))

        return await self.request(what, post)

    def _call_params(
        self, name: str, arguments: dict[str, Any], meta: dict[str, Any], progress: bool
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name, "arguments": arguments, "_meta": meta}
        if progress:
            params["_meta"] = {**meta, "progressToken": f"hotcross-progress-{next(self._progress_tokens)}"}
        return params

    def _post(
        self,
        method: str,
        params: dict[str, Any],
        on_notification: Notify | None,
        *,
        modern: bool = False,
        on_request: Ask | None = None,
    ) -> Awaitable[dict[str, Any]]:
        """One JSON-RPC request by POST on the connection that is up (`HttpPoster.request`, awaited by the caller:
        no coroutine of its own on the forwarded calls' path)."""
        poster = self._poster
        if poster is None:
            raise aiohttp.ClientConnectionError("not connected")
        asserter = self._asserter
        headers = asserter.header(params.get("_meta")) if asserter is not None else None
        return poster.request(method, params, on_notification, headers, modern=modern, on_request=on_request)

    @property
    def serves_modern(self) -> bool:
        """Whether this upstream (HTTP) also serves 2026-07-28, so a client of that revision is forwarded in it."""
        poster = self._poster
        return poster is not None and poster.modern

    async def forward_modern(
        self, method: str, params: dict[str, Any], on_notification: Notify | None = None, *, timed: bool = True
    ) -> dict[str, Any]:
        """A 2026-07-28 request (`tools/call`, `prompts/get`, `resources/read`) passed to the upstream in that
        revision: `params` as the client's (its `_meta` envelope, `inputResponses`, `requestState`) with the caller
        filled in, the result as the upstream sent it — an `input_required` one included, whose round trips the
        client makes through the bridge again; failures as `request`'s (`timed=False`: a `subscriptions/listen`
        stream, open for as long as its client keeps it)."""

        async def post(_session: ClientSession) -> dict[str, Any]:
            result = await self._post(method, params, on_notification, modern=True)
            result.setdefault("resultType", "complete")  # absent means complete (servers that leave it out)
            return result

        return await self.request(f"{method} (2026-07-28)", post, timed=timed)

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

    def session_lost(self, reason: str) -> None:
        """An HTTP upstream no longer knows the session (it restarted): nothing more is sent on it, and a new one is
        made at once, without the back-off of a failure (requests wait for it, `session`)."""
        self._session_lost = True
        if self.state is State.UP:
            self._session = None
            self._set_state(State.STARTING)
        self.break_connection(reason)

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

    def _set_state(self, state: State) -> None:
        self.state = state
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._broken = None
            self._wake = anyio.Event()
            self._set_state(State.STARTING)
            up_since: float | None = None
            try:
                async with self._connected() as session:
                    self._session = session
                    self.starts += 1
                    up_since = self.last_used = time.monotonic()  # idle from now, not from the request that started it
                    self.failing = 0
                    self._set_state(State.UP)
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
            if self._session_lost and up_since is not None:
                self._session_lost = False
                logger.warning("%s: %s; connecting again", self.name, self.last_error)
                continue
            self._session_lost = False
            wait = RESTART_SECONDS[min(failures, len(RESTART_SECONDS) - 1)]
            failures += 1
            self._retry_at = time.monotonic() + wait
            self._set_state(State.DOWN)
            logger.warning("%s is down (%s); next attempt in %s s", self.name, self.last_error, wait)
            self._wake = anyio.Event()
            with anyio.move_on_after(wait):
                await self._wake.wait()
        self._set_state(State.STOPPED)

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[ClientSession]:
        async with contextlib.AsyncExitStack() as stack:
            if self.config.transport == "http":
                self._asserter = Asserter(self.config.assertion_key, self.config.issuer, audience=self.url)

                def lost(reason: str) -> None:
                    if self._poster is poster:  # not a late answer on a session already replaced
                        self.session_lost(reason)

                poster = HttpPoster(
                    self.url,
                    self.config.headers,
                    connect_timeout=min(10.0, self.config.start_timeout),
                    on_session_lost=lost,
                )

                async def note_session(response: httpx2.Response) -> None:
                    poster.session_id = response.headers.get("mcp-session-id") or poster.session_id

                timeout = httpx2.Timeout(self.config.timeout, connect=min(10.0, self.config.start_timeout))
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=self.config.headers, timeout=timeout, event_hooks={"response": [note_session]}
                    )
                )
                await poster.open()
                stack.push_async_callback(poster.close)
                stack.callback(setattr, self, "_poster", None)
                read, write = await stack.enter_async_context(streamable_http_client(self.url, http_client=http))
                self._poster = poster
            else:
                # The upstream's stderr is the server's (its log): what it says when it fails is there.
                read, write = await stack.enter_async_context(stdio_client(self._parameters(), errlog=_stderr()))
            # An HTTP upstream may ask the caller's client (sampling, elicitation, roots) in a call's stream, where
            # the bridge knows whose call it is (`HttpPoster`): so it may ask. Asked outside a call, it is refused.
            asks = (
                {"sampling_callback": _refused, "elicitation_callback": _refused, "list_roots_callback": _refused}
                if self.config.transport == "http"
                else {}
            )
            session = await stack.enter_async_context(
                ClientSession(read, write, message_handler=self._on_message, client_info=CLIENT_INFO, **asks)
            )
            with anyio.fail_after(self.config.start_timeout):
                await session.initialize()
                if self._poster is not None:
                    self._poster.protocol_version = session.protocol_version
                    # Does it also serve 2026-07-28? Then a client of that revision is forwarded in it.
                    self._poster.modern = await self._poster.discover(CLIENT_INFO.model_dump(exclude_none=True))
                await self._read_lists(session)
            yield session

    def _parameters(self) -> StdioServerParameters:
        """How the process is started. An organization's gets its data folder as HOME, working directory and
        HOTCROSS_DATA_DIR, and runs in the sandbox (`upstream.sandbox`) unless the operator turned it off."""
        env = {**get_default_environment(), **self.config.env}
        cwd = None
        command = list(self.config.command)
        if self.organization_id is not None:
            data_dir = (self.config.data_dir / self.organization_id).resolve()
            data_dir.mkdir(parents=True, exist_ok=True)
            env.update(HOTCROSS_ORGANIZATION_ID=self.organization_id, HOTCROSS_DATA_DIR=str(data_dir))
            env["HOME"] = cwd = str(data_dir)
            if self.config.sandboxed:
                command = sandbox.wrap(command, data_dir, self.config)
        program, *args = command
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
                if exc.code == CONNECTION_CLOSED and transport_closed(session):
                    self._broken = "it closed the connection (exited or crashed)"
                else:
                    logger.warning("%s refused to list its tools: %s", self.name, exc.code)
            except Exception as exc:
                self._broken = f"listing its tools failed: {exc.__class__.__name__}"

    async def _read_lists(self, session: ClientSession) -> None:
        before, self.listing = self.listing, await read_listing(session)
        changed = [kind for kind, key in _LISTS if before.read_at and key(before) != key(self.listing)]
        for kind in changed:  # after the new lists are in: a client that lists again gets them
            await self._tell(self.on_list_changed, kind, "a list change")

    async def _tell(self, listeners: list[Callable[[str], Awaitable[None]]], value: str, what: str) -> None:
        """Each listener hears `value`; one that fails is logged and the others still hear it."""
        for listener in list(listeners):
            try:
                await listener(value)
            except Exception:
                logger.exception("%s: %s could not be passed on", self.name, what)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(
            message, ToolListChangedNotification | PromptListChangedNotification | ResourceListChangedNotification
        ):
            self.refresh_soon()
        elif isinstance(message, ResourceUpdatedNotification):
            await self._tell(self.on_resource_updated, str(message.params.uri), "a resource update")
        elif isinstance(message, Exception):
            logger.warning("%s sent something that is not MCP: %s", self.name, message.__class__.__name__)

    def _failure(self, exc: BaseException) -> str:
        exc = _innermost(exc)
        if isinstance(exc, TimeoutError):
            return f"it did not answer initialize within {self.config.start_timeout:g} s"
        if isinstance(exc, AssertionKeyError):
            logger.warning("%s: %s", self.name, exc)
            return "the key that signs the caller's assertion cannot be read (HOTCROSS_MCP_UPSTREAM_ASSERTION_KEY)"
        if isinstance(exc, sandbox.SandboxError):
            logger.warning("%s: %s", self.name, exc)
            return f"its sandbox cannot be set up: {exc} (or set HOTCROSS_MCP_UPSTREAM_SANDBOX=off)"
        if isinstance(exc, FileNotFoundError):
            logger.warning("%s: %s", self.name, exc)
            return "its command was not found (HOTCROSS_MCP_UPSTREAM)"
        if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
            return "it exited before it answered initialize"
        if isinstance(exc, MCPError):
            return f"it refused initialize ({exc.code})"
        logger.warning("%s could not be started or reached: %r", self.name, exc)
        return f"it could not be started or reached ({exc.__class__.__name__})"


async def _refused(*_args: Any) -> ErrorData:
    """What an upstream gets when it asks the client outside any call (nobody to ask)."""
    return ErrorData(code=INVALID_REQUEST, message="Only a request made during a tool call reaches a client.")


# Each list a client may be told changed, and what of a listing it compares.
_LISTS: tuple[tuple[str, Callable[[Listing], Any]], ...] = (
    ("tools", lambda listing: listing.tools),
    ("prompts", lambda listing: listing.prompts),
    ("resources", lambda listing: (listing.resources, listing.templates)),
)


def _in(seconds: float) -> str:
    """ "in 3 s", never "in 0 s": a wait under a second is said as such, others rounded up."""
    return "in under a second" if seconds < 1 else f"in {math.ceil(seconds)} s"


def transport_closed(session: ClientSession) -> bool:
    """Whether `session`'s transport has closed (the process exited, the stream ended): what tells the SDK's
    CONNECTION_CLOSED (-32000) apart from an upstream's own JSON-RPC error with that code, which goes back to its
    caller and leaves the connection up. The SDK keeps that state on its dispatcher; if a later SDK moves it, every
    -32000 counts as a closed connection again (the safe side: a restart, never a dead connection kept)."""
    dispatcher = getattr(session, "_dispatcher", None)
    closed = getattr(dispatcher, "_closed", None)
    return closed if isinstance(closed, bool) else True


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
