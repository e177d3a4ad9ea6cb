"""What the bridge tells a client while it serves one of its requests: log messages and progress.

- `logging/setLevel` (the handshake era's way to choose which log messages a connection gets) is answered by
  `set_level`, which the bridge's server registers, so the `logging` capability is declared. The level is the
  connection's: over stdio, the rest of the session; over stateless HTTP each POST is a connection of its own, so
  the level cannot outlive the request that set it (every level is sent there, as the handshake era allows).
- On 2026-07-28 a request opts into log messages itself (the reserved `_meta` key `io.modelcontextprotocol/logLevel`,
  that level and above); without it nothing is sent.
- `relay_log` and `relay_progress` pass a message of the upstream on to the client whose request it is about, on that
  request's own stream (the POST's event stream, or stdio), with the client's own progress token.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from mcp.server.connection import allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp_types import EmptyResult, LoggingMessageNotification, LoggingMessageNotificationParams, SetLevelRequestParams

logger = logging.getLogger(__name__)

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")  # RFC 5424, lowest first

# The level a connection asked for (`logging/setLevel`), by the SDK's connection object: forgotten with it.
_levels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The SDK's connection (the client) of `ctx`'s request, or None. mcp 2.3 keeps it on the request's session
    (`ServerSession._connection`): the bridge reads it here only (the log level, subscriptions, list changes)."""
    return getattr(ctx.session, "_connection", None)


def request_channel(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The channel of `ctx`'s own request (its event stream over HTTP, the pipe over stdio), for a request or a
    notification that must ride it. mcp 2.3 keeps it on the session (`ServerSession._request_outbound`): read here
    only."""
    return ctx.session._request_outbound


async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
    """`logging/setLevel`: the connection gets log messages of that level and above from now on."""
    connection = connection_of(ctx)
    if connection is not None:
        try:
            _levels[connection] = params.level
        except TypeError:  # not weakly referable: nothing to remember it on
            pass
    return EmptyResult()


def wants(ctx: ServerRequestContext[Any, Any], level: str) -> bool:
    """Whether this request's client gets a log message of `level`."""
    if level not in LEVELS:
        return False
    if level not in allowed_log_levels(ctx.protocol_version, ctx.meta):  # the 2026-07-28 per-request opt-in
        return False
    connection = connection_of(ctx)
    chosen = _levels.get(connection) if connection is not None else None
    return chosen is None or LEVELS.index(level) >= LEVELS.index(chosen)


async def relay_log(ctx: ServerRequestContext[Any, Any], params: dict[str, Any]) -> None:
    """An upstream's `notifications/message` params, sent to the client of `ctx`'s request if it wants that level."""
    level = params.get("level")
    if not isinstance(level, str) or not wants(ctx, level):
        return
    name = params.get("logger")
    notification = LoggingMessageNotification(
        params=LoggingMessageNotificationParams(
            level=level,  # type: ignore[arg-type]  # checked against LEVELS by wants()
            data=params.get("data"),
            logger=name if isinstance(name, str) else None,
        )
    )
    await ctx.session.send_notification(notification, related_request_id=ctx.request_id)


async def relay_progress(ctx: ServerRequestContext[Any, Any], params: dict[str, Any]) -> None:
    """An upstream's `notifications/progress` params, sent with the token the client gave (nothing if it gave none)."""
    progress = params.get("progress")
    if not isinstance(progress, int | float) or isinstance(progress, bool):
        return
    total, text = params.get("total"), params.get("message")
    await ctx.session.report_progress(
        progress,
        total if isinstance(total, int | float) and not isinstance(total, bool) else None,
        text if isinstance(text, str) else None,
    )
