"""Requests from the bridge to its client in the middle of one of the client's requests (sampling, elicitation, the
client's roots): how an upstream's question reaches the person or model behind the client, and the answer comes back.

- stdio: the SDK's own channel (the client answers on the same pipe).
- HTTP, handshake era: the bridge is stateless, so the SDK's stateless transport has no way back for the answer,
  which the client POSTs separately. `BackChannelManager` is the SDK's stateless session manager whose per-POST
  transport may send requests on that POST's event stream; `ask_client` sends each under an id of its own
  (`hotcross-ask-<uuid>`), and `Replies` hands a POST that is exactly the answer to one of them to the transport that
  waits for it — only from the same developer. The answer must reach the server process that asked: with several
  workers behind a balancer that spreads requests, route by client (sticky sessions) or clients can time out.
- HTTP, 2026-07-28: no requests to the client at all; an upstream asks with an `input_required` result, which the
  gateway passes back (`mcp_bridge.gateway.server`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.runner import serve_connection
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from mcp_types import DEFAULT_NEGOTIATED_VERSION, INVALID_REQUEST
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_bridge.auth import current_caller
from mcp_bridge.bodies import read_body, replay
from mcp_bridge.notifications import request_channel

logger = logging.getLogger(__name__)

ASKED = frozenset({"sampling/createMessage", "elicitation/create", "roots/list"})
_CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}

# The transport of the POST being served (set for its server task, which the handlers run in).
_transport: contextvars.ContextVar[StreamableHTTPServerTransport | None] = contextvars.ContextVar(
    "hotcross_back_channel_transport", default=None
)


class Waiter(Protocol):
    """What takes the POST of a client's answer: an SDK transport, or `AnswerWaiter`."""

    async def handle_request(self, scope: Scope, receive: Receive, send: Send) -> None: ...


# Requests waiting for the client's answer over HTTP: id → (what waits for it, the developer asked).
_waiting: dict[str, tuple[Waiter, str | None]] = {}


class BackChannelManager(StreamableHTTPSessionManager):
    """The SDK's stateless streamable-HTTP manager (mcp 2.3's `_handle_stateless_request`), with a way back: the
    POST's transport may send requests on its event stream (`can_send_request`), and is known to `Replies` while it
    waits for their answers."""

    async def _handle_stateless_request(
        self, protocol_version_hint: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        http_transport = StreamableHTTPServerTransport(
            mcp_session_id=None,
            is_json_response_enabled=self.json_response,
            event_store=None,
            security_settings=self.security_settings,
        )

        async def run_stateless_server(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            async with http_transport.connect() as streams:
                read_stream, write_stream = streams
                task_status.started()
                dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                    read_stream,
                    write_stream,
                    inline_methods=frozenset({"initialize"}),
                    transport_builder=lambda _md: TransportContext(kind="streamable-http", can_send_request=True),
                )
                version = protocol_version_hint if protocol_version_hint is not None else DEFAULT_NEGOTIATED_VERSION
                connection = Connection.from_envelope(version, None, None)
                try:
                    await serve_connection(
                        self.app, dispatcher, connection=connection, lifespan_state=self._lifespan_state
                    )
                except Exception:
                    logger.exception("Stateless session crashed")

        assert self._task_group is not None
        # Handlers run in the context of the task that hands the transport its message (mcp 2.x carries it with the
        # message): this one, while it serves the POST.
        token = _transport.set(http_transport)
        try:
            await self._task_group.start(run_stateless_server)
            await http_transport.handle_request(scope, receive, send)
        finally:
            _transport.reset(token)
            with anyio.CancelScope(shield=True):
                await http_transport.terminate()


async def ask_client(ctx: ServerRequestContext[Any, Any], method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Ask the client of `ctx`'s request (`method`: one of `ASKED`) and return its result; its error, or that it
    cannot be asked (it did not declare the capability, or its connection has no way back), as `MCPError`."""
    request_id = _question_id(method)  # first: an unknown method is refused as such
    declared = ctx.session.client_capabilities
    if declared is not None and getattr(declared, _CAPABILITY[method], None) is None:
        raise MCPError(
            code=INVALID_REQUEST, message=f"The client did not declare the {_CAPABILITY[method]} capability."
        )
    transport = _transport.get()
    if transport is not None:
        _waiting[request_id] = (transport, _developer())
    channel = request_channel(ctx)  # onto this request's stream, not the standalone one
    try:
        return await channel.send_raw_request(method, params, {"request_id": request_id})
    except NoBackChannelError:
        raise MCPError(
            code=INVALID_REQUEST,
            message="The client's connection cannot take requests (it accepts JSON answers only).",
        ) from None
    finally:
        _waiting.pop(request_id, None)


def _question_id(method: str) -> str:
    """A new id for a request to the client (unique, so that its answer finds it); MCPError for a method the bridge
    does not pass on."""
    if method not in ASKED:
        raise MCPError(code=INVALID_REQUEST, message=f"The bridge does not pass {method!r} on to clients.")
    return f"hotcross-ask-{uuid.uuid4().hex}"


class AnswerWaiter:
    """Waits for the client's answer to one request written on an event stream the bridge writes itself (the
    gateway's direct forwarding)."""

    def __init__(self) -> None:
        self._answered = anyio.Event()
        self._answer: dict[str, Any] = {}

    async def handle_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        read = await read_body(receive)  # what `Replies` read and checked already, replayed
        if read is None:
            return  # the client went away
        self._answer = json.loads(read[0])
        self._answered.set()
        await Response(status_code=202)(scope, receive, send)

    async def result(self) -> dict[str, Any]:
        await self._answered.wait()
        error = self._answer.get("error")
        if isinstance(error, dict):  # passed on to the upstream as the client's error (a code that is an int)
            code = error.get("code")
            code = code if isinstance(code, int) and not isinstance(code, bool) else INVALID_REQUEST
            raise MCPError(code=code, message=str(error.get("message", ""))[:1000])
        result = self._answer.get("result")
        return result if isinstance(result, dict) else {}


async def ask_on_stream(
    write_event: Callable[[bytes], Awaitable[None]], method: str, params: dict[str, Any] | None
) -> dict[str, Any]:
    """Ask the client on an event stream the caller writes (`write_event(data)`), and wait for its answer."""
    request_id = _question_id(method)
    waiter = AnswerWaiter()
    _waiting[request_id] = (waiter, _developer())
    try:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await write_event(json.dumps(message, separators=(",", ":")).encode())
        return await waiter.result()
    finally:
        _waiting.pop(request_id, None)


class Replies:
    """ASGI wrapper: a POST that is exactly a JSON-RPC answer to a request `ask_client` sent goes to the transport
    that waits for it (202, as the SDK answers one). Anything else goes on, its body replayed. Costs nothing while
    no request waits."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _waiting or scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        read = await read_body(receive)
        if read is None:
            return  # the client went away
        body, more = read
        waiting = None if more else self._waiting_for(body)
        replayed = replay(body, more, receive)
        if waiting is None:
            await self.app(scope, replayed, send)
            return
        await waiting.handle_request(scope, replayed, send)

    def _waiting_for(self, body: bytes) -> Waiter | None:
        if b'"method"' in body:
            return None
        try:
            message = json.loads(body)
        except ValueError:
            return None
        if not isinstance(message, dict) or not ("result" in message or "error" in message):
            return None
        found = _waiting.get(message.get("id")) if isinstance(message.get("id"), str) else None
        if found is None:
            return None
        transport, developer = found
        if developer != _developer():
            logger.warning("an answer to the bridge's request came from another developer: refused")
            return None
        return transport


def _developer() -> str | None:
    """The developer of the request being served (bound by `mcp_bridge.auth`), None where there is none."""
    try:
        return str(current_caller().developer_id)
    except RuntimeError:
        return None
