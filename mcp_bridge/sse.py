"""JSON unless there is something to stream: the answer of a POST to /mcp whose client accepts `text/event-stream`.

The SDK's handshake-era stateless transport answers every request of its SSE mode as an event stream, even when the
stream holds nothing but the answer. `JsonUnlessStreamed` wraps that app and holds the stream back: if the first
event is a notification or a request (progress, a log message, …), or a keep-alive comment, the stream is sent as it
is from there on; if the stream ends holding only the answer, that answer goes out as a plain `application/json`
response, as the JSON mode would have sent it. So a call that says nothing on the way costs the client no event
parsing, and one that does reaches it as it happens. (The 2026-07-28 entry of the SDK does the same itself: its
answers pass through unchanged.)
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SSE = b"text/event-stream"
_DROPPED_WHEN_JSON = {b"content-type", b"content-length", b"cache-control", b"connection", b"x-accel-buffering"}


def accepts_event_stream(scope: Scope) -> bool:
    """Whether the request's Accept header names `text/event-stream` (or `*/*`)."""
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            lowered = value.lower()
            return _SSE in lowered or b"*/*" in lowered
    return False


class JsonUnlessStreamed:
    """ASGI wrapper (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held = _HeldStream(send)
        await self.app(scope, receive, held.send)
        await held.finish()


class _HeldStream:
    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None  # the held `http.response.start` of an event stream
        self._buffer = bytearray()  # what the held stream said so far
        self._passing = False  # sent as it comes (not an event stream, or committed to one)
        self._done = False

    async def send(self, message: Message) -> None:
        if self._passing:
            await self._send(message)
            return
        if message["type"] == "http.response.start":
            if _content_type(message) != _SSE:
                self._passing = True
                await self._send(message)
            else:
                self._start = message
            return
        if message["type"] != "http.response.body" or self._start is None:
            await self._send(message)
            return
        self._buffer += message.get("body", b"")
        if self._streams():
            await self._commit(more=bool(message.get("more_body", False)))
            return
        if not message.get("more_body", False):
            await self._answer_as_json()

    async def finish(self) -> None:
        """The app returned: whatever is still held goes out (an app that never ended its body)."""
        if self._start is not None and not self._passing and not self._done:
            await self._answer_as_json()

    def _streams(self) -> bool:
        """Whether the held stream shows anything but one answer: a comment (keep-alive) or a message with a
        method (a notification or a request to the client), or more than one message."""
        events = bytes(self._buffer).replace(b"\r\n", b"\n").split(b"\n\n")
        complete = events[:-1]
        messages = 0
        for event in complete:
            data = _data_of(event)
            if data is None:
                if any(line.startswith(b":") for line in event.split(b"\n")):
                    return True  # a keep-alive: a long call, so the stream is kept
                continue
            messages += 1
            try:
                decoded = json.loads(data)
            except ValueError:
                return True
            if not isinstance(decoded, dict) or "method" in decoded or messages > 1:
                return True
        return False

    async def _commit(self, *, more: bool) -> None:
        assert self._start is not None
        self._passing = True
        await self._send(self._start)
        await self._send({"type": "http.response.body", "body": bytes(self._buffer), "more_body": more})
        self._buffer.clear()

    async def _answer_as_json(self) -> None:
        assert self._start is not None
        self._done = True
        events = bytes(self._buffer).replace(b"\r\n", b"\n").split(b"\n\n")
        bodies = [data for data in (_data_of(event) for event in events) if data is not None]
        if len(bodies) != 1:  # nothing, or not one answer: the stream as it was
            self._passing = True
            await self._send(self._start)
            await self._send({"type": "http.response.body", "body": bytes(self._buffer)})
            return
        body = bodies[0]
        headers: list[Any] = [(k, v) for k, v in self._start.get("headers", ()) if k.lower() not in _DROPPED_WHEN_JSON]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self._send({"type": "http.response.start", "status": self._start["status"], "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


def _content_type(start: Message) -> bytes:
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value).split(b";")[0].strip().lower()
    return b""


def _data_of(event: bytes) -> bytes | None:
    """An SSE event's data (its `data:` lines joined), None when it has none."""
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None
