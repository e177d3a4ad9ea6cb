"""Direct forwarding: a `tools/call` of an HTTP upstream's tool, answered without the mcp SDK's server (issue 14).

For every request the SDK's stateless streamable-HTTP path builds a transport, a server session, task groups and
memory streams, and validates the message with Pydantic both ways; for a forwarded call that costs the bridge more
CPU than the upstream's whole answer (`bench/gateway_overhead.py`). So a POST whose body is exactly one JSON-RPC
`tools/call` request of a tool the (shared, HTTP) upstream lists is answered here, by the same rules in the same
order as through the SDK:

1. the credential was checked and the caller bound by `BearerKeyMiddleware`, which this app sits inside (and which
   turns a `rate_limited` refusal into HTTP 429 with `Retry-After`);
2. the caller's plan admits the call (`mcp_bridge.admission.admit_call`: the tool, the monthly cap, the rate limits);
3. it is metered like any forwarded call (`metering.metered`: ok or error, with its duration; refused when the usage
   buffer is full);
4. the identity arguments and `_meta` are filled (`mcp_bridge.gateway.identity`) and the call is one POST to the
   upstream (`Upstream.call_tool_json`), whose failures are the gateway's errors (`upstream_unavailable`,
   `upstream_timeout`); its result passes through as the upstream sent it, `isError` included.

Anything else goes to the SDK unchanged, the body replayed, so it is answered exactly as before: other methods,
batches, notifications, a progress token, built-in tools, names the upstream does not list, a stdio or
per-organization upstream, an upstream that is not up yet (the SDK path waits for it and says why it is down),
headers the SDK would refuse (Accept, Content-Type, an unknown `MCP-Protocol-Version`), and bodies it would refuse
(not JSON, not valid JSON-RPC, too large). `HOTCROSS_MCP_DIRECT_FORWARD=false` sends everything to the SDK.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from infra import metrics
from mcp_bridge import metering
from mcp_bridge.admission import admit_call
from mcp_bridge.auth import RefusalNote, current_caller, refusal_note
from mcp_bridge.back_channel import ask_on_stream
from mcp_bridge.bodies import read_body, replay
from mcp_bridge.gateway import upstream as gateway_upstream
from mcp_bridge.gateway.identity import caller_meta, forwarded_arguments, traced
from mcp_bridge.gateway.upstream import Upstream
from mcp_bridge.notifications import LEVELS
from mcp_bridge.sse import accepts_event_stream

logger = logging.getLogger(__name__)

_REQUEST_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_PARAMS_KEYS = frozenset({"name", "arguments", "_meta"})
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform")]
_DIRECT = metrics.GATEWAY_FORWARDED.labels("direct")


class DirectForwarding:
    """ASGI app inside `BearerKeyMiddleware`, in front of the SDK's streamable-HTTP app (`server`'s)."""

    def __init__(self, app: ASGIApp, server: MCPServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = (
            gateway_upstream.current_pool()
            if scope["type"] == "http" and settings.HOTCROSS_MCP_DIRECT_FORWARD
            else None
        )
        if gateway is None or gateway.per_organization:
            await self.app(scope, receive, send)
            return
        if not _headers_the_sdk_accepts(scope):
            await self.app(scope, receive, send)
            return
        read = await read_body(receive)
        if read is None:
            return  # the client went away
        body, more = read
        found = None if more or len(body) > DEFAULT_MAX_REQUEST_BODY_SIZE else await self._forwardable(gateway, body)
        if found is None:
            await self.app(scope, replay(body, more, receive), send)
            return
        request_id, upstream, name, arguments, meta = found
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        stream = _Stream(send) if accepts_event_stream(scope) else None
        try:
            with traced(meta):
                answer["result"] = await self._forward(upstream, name, arguments, refusal_note(scope), stream)
        except MCPError as exc:
            answer["error"] = exc.error.model_dump(by_alias=True, exclude_unset=True)
        except Exception as exc:  # a bug, not the client's mistake: what the SDK's server answers then, not a 500
            logger.exception("direct forwarding of tools/call %r failed", name)
            answer["result"] = {"content": [{"type": "text", "text": str(exc)}], "isError": True}
        body = json.dumps(answer, separators=(",", ":")).encode()
        if stream is not None and stream.started:
            await stream.end(body)
            return
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _forwardable(
        self, gateway: gateway_upstream.UpstreamPool, body: bytes
    ) -> tuple[str | int, Upstream, str, dict[str, Any], Any] | None:
        """(id, upstream, tool name, arguments, the client's `_meta`) of a request this app answers; None for
        everything else."""
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(message, dict) or message.keys() != _REQUEST_KEYS:
            return None
        request_id, params = message["id"], message["params"]
        if message["jsonrpc"] != "2.0" or message["method"] != "tools/call":
            return None
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return None
        if not isinstance(params, dict) or not params.keys() <= _PARAMS_KEYS:
            return None
        name, arguments, meta = params.get("name"), params.get("arguments"), params.get("_meta")
        if not isinstance(name, str) or not isinstance(arguments, dict | None):
            return None
        if meta is not None and (not isinstance(meta, dict) or "progressToken" in meta):
            return None  # progress: the SDK path relays what it can
        if self.server._tool_manager.get_tool(name) is not None:
            return None  # a built-in or module tool
        upstream = await gateway_upstream.caller_upstream(gateway, current_caller())
        if upstream.config.transport != "http" or upstream.state != "up" or name not in upstream.listing.tools:
            return None
        return request_id, upstream, name, arguments or {}, meta

    async def _forward(
        self,
        upstream: Upstream,
        name: str,
        arguments: dict[str, Any],
        note: RefusalNote | None,
        stream: _Stream | None,
    ) -> dict[str, Any]:
        caller = current_caller()
        await admit_call(caller, name, note)
        tool = upstream.listing.tools.get(name)
        forwarded, meta = forwarded_arguments(tool, arguments, caller), caller_meta(caller)
        _DIRECT.inc()
        relay = stream.log if stream is not None else None
        ask = stream.ask if stream is not None else None
        return await metering.metered(name, lambda: upstream.call_tool_json(name, forwarded, meta, relay, ask))


class _Stream:
    """The answer as an event stream, begun by the first log message or request the upstream sends about the call
    (the client accepts one, and there is something to stream); until then, and if none comes, the answer is plain
    JSON. A request (sampling, elicitation, roots) is asked of the client there (`mcp_bridge.back_channel`). A call
    with a progress token goes through the SDK's path. Every level is passed on (a handshake
    era stateless request: the level a client set cannot outlive its own request)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def log(self, message: dict[str, Any]) -> None:
        params = message.get("params")
        if message.get("method") != "notifications/message" or not isinstance(params, dict):
            return
        if params.get("level") not in LEVELS:
            return
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": params}
        await self._event(json.dumps(note, separators=(",", ":")).encode())

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """A request of the upstream (sampling, elicitation, roots) asked of the client on this stream."""
        params = message.get("params")
        return await ask_on_stream(
            self._event, str(message.get("method")), params if isinstance(params, dict) else None
        )

    async def end(self, answer: bytes) -> None:
        await self._event(answer, more=False)

    async def _event(self, data: bytes, *, more: bool = True) -> None:
        if not self.started:
            self.started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        await self._send(
            {"type": "http.response.body", "body": b"event: message\r\ndata: " + data + b"\r\n\r\n", "more_body": more}
        )


def _headers_the_sdk_accepts(scope: Scope) -> bool:
    """The SDK's checks of a POST's headers (Accept, Content-Type, MCP-Protocol-Version), passed: a request failing
    any of them goes to the SDK, which answers it as it always has."""
    headers = Headers(scope=scope)
    has_json, _ = check_accept_headers(SimpleNamespace(headers=headers))  # type: ignore[arg-type]
    if not has_json:
        return False
    content_type = headers.get("content-type", "")
    if "application/json" not in (part.strip() for part in content_type.split(";")[0].split(",")):
        return False
    version = headers.get("mcp-protocol-version")
    return version is None or version in HANDSHAKE_PROTOCOL_VERSIONS
