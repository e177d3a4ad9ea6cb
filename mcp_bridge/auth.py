"""Who is calling: a developer's key or OAuth access token → `Principal`, on both transports, and how a refusal reaches
the client.

The rules (revoked, expired, inactive developer, inactive subscription, seat limit) live behind the credential door
(`accounts.credentials`, with the key and token backends `accounts.authentication` and `oauth.authentication`); this
module only carries its answer to MCP clients, and tells the request log whose request it is
(`infra.request_log.note_developer`):

- stdio: the key comes from `HOTCROSS_API_KEY`, checked when the server starts and again on every request
  (`CallerMiddleware`), so a revocation mid-session refuses the next call.
- streamable HTTP: `Authorization: Bearer <key>` or `X-API-Key: <key>` on every HTTP request (`BearerKeyMiddleware`); at
  `/mcp` (not at the key-only `/mcp/key`, which accepts the key backend's kind only) also `Authorization: Bearer <OAuth
  access token>`, checked by `oauth.authentication` under the same refusal rules. No credentials → HTTP 401 with
  `WWW-Authenticate: Bearer`; a credential that does not work, or no longer does (`ENDED_CREDENTIAL`: unknown, revoked,
  rotated away, expired) → HTTP 401 with `error="invalid_token"` ("Invalid or expired tokens MUST receive a HTTP 401
  response", MCP authorization). At `/mcp` every 401 challenge also names the Protected Resource Metadata
  (`resource_metadata`, RFC 9728, so MCP clients find the OAuth server) and the scope to ask for (`scope="mcp"`); at
  `/mcp/key` neither (no OAuth there). A working credential whose developer lacks standing (deactivated, the
  subscription inactive, beyond the seats) → HTTP 403: signing in again would not help. Either way the body is a
  JSON-RPC error carrying the refusal's code and message (docs/clients.md, "Refusals"). Database unreachable → HTTP 503,
  same body shape.

In every case the refusal is a JSON-RPC error with code `KEY_REFUSED`, a message that starts with the stable refusal
code (`key_revoked: This API key was revoked …`, so people see both) and `data = {"code", "message"}` for programs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accounts import credentials, keys
from accounts.credentials import Principal, aauthenticate
from accounts.exceptions import KeyRefused
from infra import request_log
from infra.db import DatabaseUnavailable

logger = logging.getLogger(__name__)

# JSON-RPC error codes (the implementation-defined server range). `data.code` says which refusal it was.
KEY_REFUSED = -32001
SERVICE_UNAVAILABLE = -32002

MISSING_HTTP_KEY = (
    "No API key. Send your Hotcross key in the header 'Authorization: Bearer hc_live_…' "
    "or 'X-API-Key: hc_live_…'; ask an administrator of your organization if you have none."
)
MISSING_STDIO_KEY = (
    "HOTCROSS_API_KEY is not set. Put your Hotcross key (hc_live_…) in the MCP server's environment; "
    "ask an administrator of your organization if you have none."
)
MULTIPLE_HTTP_KEYS = (
    "More than one credential (Authorization or X-API-Key headers). Send exactly one: "
    "'Authorization: Bearer hc_live_…' or 'X-API-Key: hc_live_…'."
)
# Refusals of a credential that does not work (any more): HTTP 401 + `error="invalid_token"`. The other codes are a
# working credential whose developer may not use it now (`developer_inactive`: staff can reactivate the developer and
# the same key and tokens work again; `subscription_inactive`, `seat_limit_exceeded`): HTTP 403.
ENDED_CREDENTIAL = frozenset(
    {KeyRefused.INVALID_KEY, KeyRefused.KEY_REVOKED, KeyRefused.KEY_ROTATED, KeyRefused.KEY_EXPIRED}
)
API_KEY = credentials.API_KEY
OAUTH = credentials.OAUTH
_MAX_BODY_FOR_ID = 64 * 1024
# An unauthenticated body is read only for its JSON-RPC id, and never parsed when it could nest deeper than this
# (each level needs a bracket): a deep document costs the parser stack, and the id of a request sits at the top.
_MAX_BRACKETS_FOR_ID = 256

_caller: ContextVar[Principal | None] = ContextVar("hotcross_mcp_caller", default=None)
# Which credential the current request came with: (API_KEY, None) or (OAUTH, the client's name).
_credential: ContextVar[tuple[str, str | None]] = ContextVar("hotcross_mcp_credential", default=(API_KEY, None))


class RefusalNote:
    """What a refusal inside the MCP server (`mcp_bridge.admission`) tells the HTTP answer of its request: a wait
    makes the answer 429 with `Retry-After`. `BearerKeyMiddleware` puts one in every HTTP request's ASGI scope, where
    the MCP server's middlewares (through `ctx.request.scope`) and the direct forwarding find it (`refusal_note`)."""

    __slots__ = ("retry_after",)

    def __init__(self) -> None:
        self.retry_after: float | None = None  # seconds; None: no refusal with a wait

    def wait(self, seconds: float) -> None:
        self.retry_after = seconds if self.retry_after is None else max(self.retry_after, seconds)


_NOTE = "hotcross.refusal_note"  # the note's key in the ASGI scope


def refusal_note(scope: Mapping[str, Any] | None) -> RefusalNote | None:
    """The refusal note of the HTTP request whose ASGI scope this is (None: stdio, or no request)."""
    return scope.get(_NOTE) if scope is not None else None


def current_credential() -> tuple[str, str | None]:
    """(`"api_key"`, None) or (`"oauth"`, the OAuth client's name) for the current MCP request."""
    return _credential.get()


# --- the caller ------------------------------------------------------------------------------------------------------


def current_caller() -> Principal:
    """The developer the current MCP request was authenticated as."""
    principal = _caller.get()
    if principal is None:
        # Only reachable if a tool runs outside the bridge's middleware: a wiring bug, not a client mistake.
        raise RuntimeError("No authenticated caller: the tool ran outside the Hotcross MCP bridge.")
    return principal


@contextlib.contextmanager
def caller_bound(principal: Principal) -> Iterator[None]:
    """Run the enclosed code as `principal` (what `current_caller()` returns)."""
    token = _caller.set(principal)
    try:
        yield
    finally:
        _caller.reset(token)


@functools.lru_cache(maxsize=4096)
def _identity(principal: Principal, prefix: str) -> tuple[AuthenticatedUser, AuthCredentials]:
    """What the SDK's `get_access_token()` and Starlette's `scope["user"]`/`scope["auth"]` carry for a request of
    `principal`: `client_id` and `subject` are the developer id, the claim `organization_id` the organization's, the
    token the key's display prefix (the plain key is not kept).

    Remembered: Pydantic models and user objects made for every request are a measurable part of what the bridge adds
    to a call. Principals are immutable, so a remembered identity never goes stale.
    """
    token = AccessToken(
        token=prefix,
        client_id=str(principal.developer_id),
        subject=str(principal.developer_id),
        scopes=[],
        claims={"organization_id": str(principal.organization_id)},
    )
    user = AuthenticatedUser(token)
    return user, AuthCredentials(user.scopes)


@contextlib.contextmanager
def identity_bound(
    principal: Principal, raw_key: str, *, oauth_client: str | None = None
) -> Iterator[tuple[AuthenticatedUser, AuthCredentials]]:
    """`caller_bound`, plus the SDK's own notion of the caller, so `get_access_token()` works on every transport.

    Gives the user and credentials objects for an ASGI scope's `user` and `auth`. `oauth_client`: the request came
    with an OAuth access token of this client (`current_credential()`), not a key.
    """
    prefix = "oauth" if oauth_client is not None else keys.display_prefix(raw_key.strip())
    identity = _identity(principal, prefix)
    sdk_token = auth_context_var.set(identity[0])
    credential = _credential.set((OAUTH, oauth_client) if oauth_client is not None else (API_KEY, None))
    try:
        with caller_bound(principal):
            yield identity
    finally:
        _credential.reset(credential)
        auth_context_var.reset(sdk_token)


# --- errors as clients see them ------------------------------------------------------------------------------------


def refusal_payload(refusal: KeyRefused) -> dict[str, Any]:
    """The JSON-RPC `error` object for a refused key."""
    return {
        "code": KEY_REFUSED,
        "message": f"{refusal.code}: {refusal.message}",
        "data": {"code": refusal.code, "message": refusal.message},
    }


def unavailable_payload(exc: DatabaseUnavailable) -> dict[str, Any]:
    return {
        "code": SERVICE_UNAVAILABLE,
        "message": f"service_unavailable: {exc.message}",
        "data": {"code": "service_unavailable", "message": exc.message},
    }


def refusal_error(refusal: KeyRefused) -> MCPError:
    payload = refusal_payload(refusal)
    return MCPError(code=payload["code"], message=payload["message"], data=payload["data"])


def unavailable_error(exc: DatabaseUnavailable) -> MCPError:
    payload = unavailable_payload(exc)
    return MCPError(code=payload["code"], message=payload["message"], data=payload["data"])


# --- stdio (and any transport): one check per request -----------------------------------------------------------------


class CallerMiddleware:
    """MCP server middleware: every request runs with its caller bound (see `current_caller`; over stdio the SDK's
    `get_access_token()` is set as well, the same as on HTTP).

    With `stdio_key` the key is checked again for every request (the per-process memory of key checks keeps that
    cheap and at most a second stale). Without it, the HTTP layer has already checked the request's bearer key and
    bound the caller; a request that arrives without one is refused.
    Notifications carry no response to refuse with and change nothing, so they pass.
    """

    def __init__(self, *, stdio_key: str | None = None) -> None:
        self._stdio_key = stdio_key

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: Callable[..., Awaitable[Any]]) -> Any:
        if ctx.request_id is None:
            return await call_next(ctx)
        if self._stdio_key is None:
            if _caller.get() is None:
                raise refusal_error(KeyRefused(KeyRefused.INVALID_KEY, MISSING_HTTP_KEY))
            return await call_next(ctx)
        try:
            principal = (await credentials.aauthenticate(self._stdio_key, kinds=credentials.KEYS_ONLY)).principal
        except KeyRefused as refusal:
            logger.info("mcp stdio request refused code=%s method=%s", refusal.code, ctx.method)
            raise refusal_error(refusal) from None
        except DatabaseUnavailable as exc:
            raise unavailable_error(exc) from None
        with identity_bound(principal, self._stdio_key):
            return await call_next(ctx)


# --- streamable HTTP: the bearer key of every HTTP request ----------------------------------------------------------


class BearerKeyMiddleware:
    """ASGI middleware in front of the MCP streamable-HTTP app: `Authorization: Bearer <developer key>`.

    The SDK's own bearer support (`token_verifier=`) can only accept a token or answer 401, and a database error
    inside it becomes a 500; a refused-but-known key deserves its reason, and an outage a 503.
    On success the caller is bound for the request (tools get `_developer_id`/`_organization_id`), and the SDK's
    `get_access_token()` works as with its own verifier (`client_id` and `subject` are the developer id; the plain key
    is not kept).
    """

    def __init__(self, app: ASGIApp, *, resource_metadata_url: str | None = None) -> None:
        """`resource_metadata_url`: OAuth access tokens are accepted too, and a 401 names this RFC 9728 document
        (None: the key-only URL, which offers no OAuth discovery)."""
        self.app = app
        self.resource_metadata_url = resource_metadata_url
        self.kinds = (API_KEY, OAUTH) if resource_metadata_url is not None else (API_KEY,)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metadata = self.resource_metadata_url
        try:
            raw_key = _credentials(scope)
        except _TooManyKeys:
            logger.info("mcp http request refused code=%s: several credentials", KeyRefused.INVALID_KEY)
            refusal = KeyRefused(KeyRefused.INVALID_KEY, MULTIPLE_HTTP_KEYS)
            await _refuse(receive, send, 401, refusal_payload(refusal), invalid_token=True, metadata=metadata)
            return
        if raw_key is None:
            refusal = KeyRefused(KeyRefused.INVALID_KEY, MISSING_HTTP_KEY)
            await _refuse(receive, send, 401, refusal_payload(refusal), metadata=metadata)
            return
        try:
            caller = await aauthenticate(raw_key, kinds=self.kinds)
            principal, oauth_client = caller.principal, caller.client_name
            request_log.note_developer(principal.developer_id)
        except KeyRefused as refusal:
            logger.info("mcp http request refused code=%s", refusal.code)
            ended = refusal.code in ENDED_CREDENTIAL
            status = 401 if ended else 403
            await _refuse(receive, send, status, refusal_payload(refusal), invalid_token=ended, metadata=metadata)
            return
        except DatabaseUnavailable as exc:
            await _refuse(receive, send, 503, unavailable_payload(exc))
            return
        note = RefusalNote()
        with identity_bound(principal, raw_key, oauth_client=oauth_client) as (user, auth):
            await self.app({**scope, "user": user, "auth": auth, _NOTE: note}, receive, _noted_send(send, note))


def _noted_send(send: Send, note: RefusalNote) -> Send:
    """`send`, but the answer to a request refused with a wait (`note`: the plan's rate limits, `mcp_bridge.admission`)
    is HTTP 429 with `Retry-After` (whole seconds, rounded up), its body still the JSON-RPC error."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and note.retry_after is not None:
            headers = [(name, value) for name, value in message.get("headers", ()) if name.lower() != b"retry-after"]
            headers.append((b"retry-after", str(max(1, math.ceil(note.retry_after))).encode()))
            message = {**message, "status": 429, "headers": headers}
        await send(message)

    return sending


class _TooManyKeys(Exception):
    """More than one Authorization header: which one counts would be up to each proxy on the way, so none does."""


def _credentials(scope: Scope) -> str | None:
    """The request's one credential: the bearer value of its Authorization header or its X-API-Key header; None when
    there is none (or another scheme).

    Raises `_TooManyKeys` when the request has several Authorization or X-API-Key headers, or both with values.
    """
    values = [value for name, value in scope.get("headers", ()) if name.lower() == b"authorization"]
    api_keys = [value for name, value in scope.get("headers", ()) if name.lower() == b"x-api-key"]
    if len(values) + len(api_keys) > 1:
        raise _TooManyKeys
    if api_keys:
        key = api_keys[0].decode("latin-1").strip()
        return key or None
    if not values:
        return None
    scheme, _, credentials = values[0].decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


async def _refuse(
    receive: Receive,
    send: Send,
    status: int,
    error: dict[str, Any],
    *,
    invalid_token: bool = False,
    metadata: str | None = None,
) -> None:
    """Answer with a JSON-RPC error body (MCP clients show its message) at an HTTP status that says the same."""
    body = json.dumps({"jsonrpc": "2.0", "id": await _request_id(receive), "error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        # RFC 6750: no error code when no credentials were sent; invalid_token when they are wrong, expired, revoked or
        # replaced. At /mcp (OAuth offered) the metadata document and the one scope (OAUTH2_PROVIDER's SCOPES).
        challenge = 'Bearer realm="hotcross"'
        if metadata is not None:
            challenge += f', resource_metadata="{metadata}", scope="{_scope()}"'
        if invalid_token:
            what = "API key or access token" if metadata is not None else "API key"
            challenge += f', error="invalid_token", error_description="The {what} is not valid."'
        headers.append((b"www-authenticate", challenge.encode()))
    elif status == 503:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _scope() -> str:
    """The scope a client asks for (RFC 6750 `scope`): the OAuth server's scopes, space-separated (only `mcp`)."""
    return " ".join(settings.OAUTH2_PROVIDER["SCOPES"])


async def _request_id(receive: Receive) -> str | int | None:
    """The JSON-RPC id of the refused request, so the error answers it; None when there is none to read."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > _MAX_BODY_FOR_ID:
            return None
        if not message.get("more_body", False):
            break
    if body.count(b"[") + body.count(b"{") > _MAX_BRACKETS_FOR_ID:
        return None  # never parse an unauthenticated document deeper than its id needs
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        return None
    request_id = request.get("id") if isinstance(request, dict) else None
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None
