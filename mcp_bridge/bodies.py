"""A request body read ahead of the app that serves it, and handed on as if unread (the gateway's direct forwarding,
the back channel's answers, an early error's request id)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from starlette.types import Message, Receive


async def read_body(receive: Receive, limit: int = DEFAULT_MAX_REQUEST_BODY_SIZE) -> tuple[bytes, bool] | None:
    """The request body, read until its end or past `limit` bytes (the SDK's by default): (what was read, whether
    more follows); None when the client went away."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not more or len(body) > limit:
            return bytes(body), more


def replay(body: bytes, more: bool, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """`receive` that gives what was already read first, then the rest of the request."""
    pending = [body]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": more}
        return await receive()

    return replayed
