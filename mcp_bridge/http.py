"""Streamable HTTP at /mcp: the ASGI app that `hotcross.asgi` mounts beside Django.

Stateless (any worker answers any request; no session affinity). In gateway mode a client that accepts
`text/event-stream` gets an event stream when the request says something on the way (progress, log messages, the
upstream's questions: `mcp_bridge.sse.JsonUnlessStreamed`, `mcp_bridge.back_channel`) and plain JSON otherwise; a
client that accepts only JSON, and every client of a bridge without an upstream, gets JSON. In front of the SDK's app:

1. Host and Origin checks by Django's rules: `ALLOWED_HOSTS` (with its `.example.com` and `*` forms; DEBUG with an
   empty list allows localhost as Django does) and, for Origin, those hosts or `CSRF_TRUSTED_ORIGINS`. Bad Host →
   421, bad Origin → 403, like the SDK's own DNS-rebinding protection, which is switched off in favour of these.
2. POST only: a stateless JSON server has no stream to offer on GET and no session to end on DELETE, so every
   other method is 405 with `Allow: POST` (as the MCP specification allows), before the key is looked at.
   An `MCP-Protocol-Version` the bridge does not speak is 400, naming the ones it does (`KnownVersions`).
3. The credential (`mcp_bridge.auth.BearerKeyMiddleware`): at `/mcp` a key or an OAuth access token, and a 401
   names the Protected Resource Metadata (RFC 9728) so MCP clients can sign in with OAuth; at `/mcp/key` a key only
   and no OAuth discovery (for clients that drop a configured header once a server offers OAuth).

`/mcp` and `/mcp/` are the same endpoint (and `/mcp/key`, `/mcp/key/`). The app also answers the ASGI lifespan,
which must run: it starts the SDK's session managers (uvicorn's default `--lifespan auto` does). Both protocol eras
are served: the handshake era's stateless POSTs, and 2026-07-28's single requests (the SDK's own entry, which checks
`Mcp-Method`/`Mcp-Name` against the body, -32020, and answers `server/discover`).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from infra.db import bound_queries
from mcp_bridge import metering
from mcp_bridge.auth import BearerKeyMiddleware
from mcp_bridge.back_channel import BackChannelManager, Replies
from mcp_bridge.bodies import read_body
from mcp_bridge.gateway import upstream as gateway_upstream
from mcp_bridge.gateway.direct import DirectForwarding
from mcp_bridge.gateway.settings import upstream_config
from mcp_bridge.server import build_server
from mcp_bridge.sse import JsonUnlessStreamed, accepts_event_stream

MCP_PATH = "/mcp"
KEY_ONLY_PATH = "/mcp/key"
KEY_ONLY_PATHS = frozenset({KEY_ONLY_PATH, KEY_ONLY_PATH + "/"})
MCP_PATHS = frozenset({MCP_PATH, MCP_PATH + "/"}) | KEY_ONLY_PATHS
RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"
_DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]  # what Django allows with DEBUG and no ALLOWED_HOSTS


class MCPHttpApp:
    """ASGI app for /mcp (and the lifespan that runs the MCP session manager)."""

    def __init__(self, server: MCPServer, *, authenticated: bool = True) -> None:
        self.server = server
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        json_app = server.streamable_http_app(
            streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, transport_security=security
        )
        # The same server in the SDK's SSE mode, for clients that accept an event stream.
        # A POST's event stream may also carry the bridge's requests to the client (`mcp_bridge.back_channel`).
        self._sse_manager = BackChannelManager(
            app=server._lowlevel_server, json_response=False, stateless=True, security_settings=security
        )
        sse_app = JsonUnlessStreamed(StreamableHTTPASGIApp(self._sse_manager))
        # Without an upstream nothing is streamed (the built-in tools say nothing on the way): JSON, the fast path.
        sdk_app = Replies(ByAccept(json_app, sse_app)) if upstream_config() is not None else json_app
        metadata = settings.HOTCROSS_PUBLIC_URL + RESOURCE_METADATA_PATH
        # A tools/call of an HTTP upstream's tool skips the SDK's server (mcp_bridge.gateway.direct).
        forwarding_app = DirectForwarding(sdk_app, server)
        oauth_app = BearerKeyMiddleware(forwarding_app, resource_metadata_url=metadata) if authenticated else sdk_app
        key_app = BearerKeyMiddleware(forwarding_app) if authenticated else sdk_app
        self._app: ASGIApp = HostOriginGuard(PostOnly(KnownVersions(oauth_app)))
        self._key_app: ASGIApp = HostOriginGuard(PostOnly(KnownVersions(key_app)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        app = self._app
        if scope["type"] == "http" and scope["path"] in MCP_PATHS:
            if scope["path"] in KEY_ONLY_PATHS:
                app = self._key_app
            scope = {**scope, "path": MCP_PATH, "raw_path": MCP_PATH.encode()}
        await app(scope, receive, send)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the SDK's session manager (for hosts that run their own lifespan); at the end, write the usage events
        still buffered."""
        try:
            async with self.server.session_manager.run(), self._sse_manager.run():
                await gateway_upstream.start()  # the shared upstream (mcp_bridge.gateway), if any
                yield
        finally:
            await gateway_upstream.close()
            await metering.flush_at_stop()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        # A server process: queries wait for the database at most DATABASE_QUERY_TIMEOUT (/healthz's and the admin's
        # too), so a database that stops answering gives 503s in seconds instead of hanging requests.
        bound_queries(settings.DATABASE_QUERY_TIMEOUT)
        await metering.load_spool_at_start()  # the usage events a stop could not write
        started = False
        try:
            async with self.running():
                started = True
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        except Exception as exc:
            await send({"type": f"lifespan.{'shutdown' if started else 'startup'}.failed", "message": repr(exc)})
            raise
        await send({"type": "lifespan.shutdown.complete"})


SUPPORTED_VERSIONS = (*reversed(HANDSHAKE_PROTOCOL_VERSIONS), *MODERN_PROTOCOL_VERSIONS)


class KnownVersions:
    """An `MCP-Protocol-Version` this bridge does not speak is 400 with a JSON-RPC error that says which it speaks
    (the SDK would answer with a message about 2026-07-28's `_meta` envelope, which misleads an older client)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            requested = next((v for k, v in scope["headers"] if k == b"mcp-protocol-version"), None)
            if requested is not None and (requested := requested.decode("latin-1")) not in SUPPORTED_VERSIONS:
                shown = requested[:40]
                error = {
                    "code": UNSUPPORTED_PROTOCOL_VERSION,
                    "message": (
                        f"Unsupported protocol version {shown!r}: this server speaks {', '.join(SUPPORTED_VERSIONS)}."
                    ),
                    # 2026-07-28's layout: the versions a client may send without `initialize`.
                    "data": {"supported": list(MODERN_PROTOCOL_VERSIONS), "requested": shown},
                }
                body = {"jsonrpc": "2.0", "id": await _request_id(receive), "error": error}
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _request_id(receive: Receive) -> str | int | None:
    """The id of the JSON-RPC request in the body (None if there is none to read), for an error answered early."""
    read = await read_body(receive)
    try:
        found = json.loads(read[0]).get("id") if read is not None and not read[1] else None
    except (ValueError, AttributeError, RecursionError):
        return None
    return found if isinstance(found, str | int) and not isinstance(found, bool) else None


class ByAccept:
    """The SDK's SSE-mode app for a client that accepts `text/event-stream`, its JSON-mode app otherwise."""

    def __init__(self, json_app: ASGIApp, sse_app: ASGIApp) -> None:
        self.json_app = json_app
        self.sse_app = sse_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.sse_app if scope["type"] == "http" and accepts_event_stream(scope) else self.json_app
        await app(scope, receive, send)


class HostOriginGuard:
    """Refuses requests whose Host or Origin this deployment does not serve (DNS rebinding, stray browsers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            if not host_allowed(headers.get("host", "")):
                await PlainTextResponse("Invalid Host header", status_code=421)(scope, receive, send)
                return
            origin = headers.get("origin")
            if origin is not None and not origin_allowed(origin):
                await PlainTextResponse("Invalid Origin header", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class PostOnly:
    """405 with `Allow: POST` for any other method: the SDK would open a never-ending SSE stream on an authenticated
    GET, which a stateless JSON server has no use for."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "POST":
            response = PlainTextResponse(
                "Method Not Allowed: this MCP endpoint takes JSON-RPC messages by POST.",
                status_code=405,
                headers={"Allow": "POST"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


@functools.lru_cache(maxsize=256)  # every request asks; a few hosts are ever served (and the cache is bounded)
def host_allowed(host: str) -> bool:
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS or (_DEBUG_HOSTS if settings.DEBUG else [])
    return bool(domain) and validate_host(domain, allowed)


@receiver(setting_changed)
def _forget_hosts(*, setting: str, **kwargs: Any) -> None:
    if setting in ("ALLOWED_HOSTS", "DEBUG"):
        host_allowed.cache_clear()


def origin_allowed(origin: str) -> bool:
    """An Origin of a host this site serves, or one of `CSRF_TRUSTED_ORIGINS` (with Django's `https://*.x` form)."""
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 literal)
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if "*" in trusted:
            pattern = urlsplit(trusted)
            if pattern.scheme == parts.scheme and is_same_domain(parts.netloc, pattern.netloc.lstrip("*")):
                return True
    return host_allowed(parts.netloc)


def build_http_app() -> MCPHttpApp:
    """The bridge over streamable HTTP, with the tools of `HOTCROSS_MCP_TOOLS`."""
    return MCPHttpApp(build_server())
