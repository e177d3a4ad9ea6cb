"""JSON-RPC over POST to a streamable-HTTP MCP server, without the mcp SDK's client (`HttpPoster`).

A forwarded `tools/call` is one POST of the JSON-RPC message on pooled keep-alive connections (aiohttp: about a
quarter of httpx's CPU per request), its answer read as JSON or as an SSE stream whose notifications go to the
caller. The trip through the SDK client's streams and tasks cost the bridge more CPU than the upstream's whole answer
(bench/gateway_overhead.py); the SDK session (`upstream.connection`) still does `initialize`, the lists and
list_changed, and tells this client the session id and protocol version it agreed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from mcp.shared.exceptions import MCPError
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from yarl import URL

MAX_SSE_EVENT = 16 * 1024 * 1024  # bytes of one event of a forwarded call's SSE answer
FORWARDING_CONNECTIONS = 100  # keep-alive connections to an HTTP upstream for forwarded calls (per upstream)

Notify = Callable[[dict[str, Any]], Awaitable[None]]
# What answers a request the upstream sends in the middle of a call (sampling, elicitation, roots): its result, or
# an MCPError for the upstream.
Ask = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MODERN = MODERN_PROTOCOL_VERSIONS[-1]  # the stateless revision (2026-07-28) a request may be forwarded in


class SessionLost(aiohttp.ClientConnectionError):
    """The upstream no longer knows the session (it restarted): the request was not served, and the connection must
    be made again (`initialize`) before anything else is sent."""


def session_gone(status: int, body: bytes) -> bool:
    """Whether an HTTP answer to a request that carried a session id says the session is gone: 404 (the spec's
    answer), or 400 whose body speaks of the session (FastMCP 1.x: `Bad Request: No valid session ID provided`;
    newer servers a JSON-RPC error saying the same)."""
    return status == 404 or (status == 400 and b"session" in body.lower())


class HttpPoster:
    """JSON-RPC requests to `url`, each one POST on this client's pool of connections (opened by `open`, closed by
    `close`). Its request ids are its own (`hotcross-1`, `hotcross-2`, ...)."""

    def __init__(
        self, url: str, headers: dict[str, str], *, connect_timeout: float, on_session_lost: Callable[[str], None]
    ) -> None:
        self.url = url
        self.session_id: str | None = None  # the upstream's Mcp-Session-Id, if it gave one
        self.protocol_version: str | None = None  # as agreed at `initialize`
        self.modern = False  # it also serves 2026-07-28's single requests (`discover`)
        self._headers = headers
        self._connect_timeout = connect_timeout
        self._on_session_lost = on_session_lost
        self._http: aiohttp.ClientSession | None = None
        self._proxy: tuple[URL | None, aiohttp.BasicAuth | None] = (None, None)
        self._ids = itertools.count(1)

    async def open(self) -> None:
        self._proxy = env_proxy(self.url)
        self._http = aiohttp.ClientSession(
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(sock_connect=self._connect_timeout),
            connector=aiohttp.TCPConnector(limit=FORWARDING_CONNECTIONS),
        )

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def request(
        self,
        method: str,
        params: dict[str, Any],
        on_notification: Notify | None,
        extra_headers: dict[str, str] | None = None,
        *,
        modern: bool = False,
        on_request: Ask | None = None,
    ) -> dict[str, Any]:
        """One JSON-RPC request by POST: its result, or its error raised as `MCPError`. The answer may be JSON or an
        SSE stream; notifications in the stream go to `on_notification`. A session the upstream no longer knows
        (`session_gone`) is reported to `on_session_lost` and raised as `SessionLost`.

        `modern`: a 2026-07-28 request (`params._meta` carries its envelope): no session, that revision's headers
        (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`). A request the upstream sends in the stream (sampling,
        elicitation, roots) is answered by `on_request` (by an error without it), the answer POSTed back."""
        http = self._http
        if http is None:
            raise aiohttp.ClientConnectionError("not connected")
        request_id = f"hotcross-{next(self._ids)}"
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode()
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if modern:
            headers.update(modern_headers(method, params))
        else:
            if self.protocol_version:
                headers["mcp-protocol-version"] = self.protocol_version
            if self.session_id:
                headers["mcp-session-id"] = self.session_id
        meta = params.get("_meta")
        trace = meta.get("traceparent") if isinstance(meta, dict) else None
        if isinstance(trace, str) and len(trace) == 55 and trace.isascii() and trace.isprintable():
            headers["traceparent"] = trace  # W3C Trace Context over HTTP too
        if extra_headers:
            headers.update(extra_headers)
        proxy, proxy_auth = self._proxy
        async with http.post(self.url, data=body, headers=headers, proxy=proxy, proxy_auth=proxy_auth) as response:
            if response.status in (400, 404) and self.session_id and not modern:
                body = await response.content.read(4096)
                if session_gone(response.status, body):
                    reason = f"it no longer knows the session (HTTP {response.status}: it restarted)"
                    self._on_session_lost(reason)
                    raise SessionLost(reason)
                raise ValueError(f"HTTP {response.status} without the answer")
            kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if kind != "text/event-stream" and response.content_length is not None:  # the common answer: one JSON
                answer = json.loads(await response.read())
                if not isinstance(answer, dict) or answer.get("id") != request_id:
                    raise ValueError(f"HTTP {response.status} without the answer")
                return _answer(answer)
            messages = _sse_messages(response) if kind == "text/event-stream" else _json_values(response)
            async for message in messages:
                if not isinstance(message, dict):
                    continue
                if message.get("id") == request_id and ("result" in message or "error" in message):
                    return _answer(message)
                if not isinstance(message.get("method"), str):
                    continue
                if "id" in message:
                    await self._reply(message, on_request, headers)
                elif on_notification:
                    await on_notification(message)
            raise ValueError(f"HTTP {response.status} without the answer")

    async def _reply(self, request: dict[str, Any], on_request: Ask | None, headers: dict[str, str]) -> None:
        """Answer a request the upstream sent in a call's stream, by a POST of the JSON-RPC response."""
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        try:
            if on_request is None:
                raise MCPError(code=-32601, message=f"The gateway cannot answer {request['method']!r} here.")
            reply["result"] = await on_request(request)
        except MCPError as exc:
            reply["error"] = exc.error.model_dump(by_alias=True, exclude_none=True)
        http = self._http
        if http is None:
            raise aiohttp.ClientConnectionError("not connected")
        proxy, proxy_auth = self._proxy
        body = json.dumps(reply).encode()
        async with http.post(self.url, data=body, headers=headers, proxy=proxy, proxy_auth=proxy_auth) as response:
            await response.read()

    async def discover(self, client_info: dict[str, Any]) -> bool:
        """Whether the upstream serves 2026-07-28 (`server/discover` names it); False on any failure."""
        meta = {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}, CLIENT_INFO_META_KEY: client_info}
        try:
            result = await self.request("server/discover", {"_meta": meta}, None, modern=True)
        except (TimeoutError, MCPError, ValueError, aiohttp.ClientError):
            return False
        versions = result.get("supportedVersions")
        return isinstance(versions, list) and MODERN in versions


# What names a request in its `Mcp-Name` header (2026-07-28), by method.
_NAMED_BY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def modern_headers(method: str, params: dict[str, Any]) -> dict[str, str]:
    """A 2026-07-28 request's routing headers, equal to its body as that revision requires."""
    headers = {"mcp-protocol-version": MODERN, "mcp-method": method}
    key = _NAMED_BY.get(method)
    name = params.get(key) if key is not None else None
    if isinstance(name, str) and name.isascii():
        headers["mcp-name"] = name
    return headers


async def _json_values(response: aiohttp.ClientResponse) -> AsyncIterator[Any]:
    """The JSON values of a JSON answer of unknown length (chunked), read as they come, one after another (some
    upstreams stream notifications before the answer, or a `subscriptions/listen` stream, as newline-separated JSON
    in an `application/json` body)."""
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        if b"\n" in chunk:
            values, pending = _complete_values(pending)
            for value in values:
                yield value
        if len(pending) > MAX_SSE_EVENT:
            raise ValueError("a JSON value larger than the bridge accepts")
    values, pending = _complete_values(pending)
    if pending.strip():
        raise ValueError("an answer that is not JSON")
    for value in values:
        yield value


def _complete_values(pending: bytes) -> tuple[list[Any], bytes]:
    """The complete JSON values at the start of `pending` (up to its last newline), and what is left of it."""
    end = pending.rfind(b"\n") + 1 if b"\n" in pending else len(pending)
    text, tail = pending[:end].decode(), pending[end:]
    decoder, values, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return values, tail
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError:  # not complete yet (a value over several lines), or not JSON: more may make it whole
            return values, text[at:].encode() + tail
        values.append(value)


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


def env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
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
