"""Metering: every `tools/call` the bridge serves is recorded as one usage event, ok or not.

A call is served when one of the server's tools was called and the client gets an answer: a result, a result
flagged `isError` (the tool failed or its arguments were wrong), or a JSON-RPC error raised inside the call. Calls
to a tool name the server does not have, and calls abandoned by the client before an answer, are not metered.

The event is written before the answer is returned, so once a client holds its answer the event exists. If the
event cannot be written (database down) the client gets an error instead of the answer: the bridge does not serve
calls it cannot meter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext

from accounts.selectors import Principal
from accounts.services import record_usage
from mcp_bridge import db
from mcp_bridge.auth import current_caller, unavailable_error
from mcp_bridge.db import DatabaseUnavailable

logger = logging.getLogger(__name__)


class MeteringMiddleware:
    """MCP server middleware; runs inside `CallerMiddleware`, which has bound the caller."""

    def __init__(self, tool_names: Collection[str]) -> None:
        self._tool_names = frozenset(tool_names)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: Callable[..., Awaitable[Any]]) -> Any:
        if ctx.method != "tools/call" or ctx.request_id is None:
            return await call_next(ctx)
        name = (ctx.params or {}).get("name")
        if name not in self._tool_names:
            return await call_next(ctx)
        caller = current_caller()
        started = time.perf_counter()
        try:
            result = await call_next(ctx)
        except Exception:
            # A JSON-RPC error raised inside the call (or bad params): served, as an error.
            await _record(caller, name, ok=False, started=started)
            raise
        ok = not (isinstance(result, dict) and result.get("isError") is True)
        await _record(caller, name, ok=ok, started=started)
        return result


async def _record(caller: Principal, tool_name: str, *, ok: bool, started: float) -> None:
    duration_ms = max(0, round((time.perf_counter() - started) * 1000))
    try:
        # Shielded: a client that goes away now must not leave a served call unrecorded.
        with anyio.CancelScope(shield=True):
            await db.run_bookkeeping(
                record_usage,
                developer_id=caller.developer_id,
                organization_id=caller.organization_id,
                tool_name=tool_name,
                ok=ok,
                duration_ms=duration_ms,
            )
    except DatabaseUnavailable as exc:
        logger.error(
            "usage event not recorded developer=%s organization=%s tool=%s ok=%s duration_ms=%s",
            caller.developer_id,
            caller.organization_id,
            tool_name,
            ok,
            duration_ms,
        )
        raise unavailable_error(exc) from None
