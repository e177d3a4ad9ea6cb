"""One log line per HTTP request, with a request id; and the JSON log format (`LOG_FORMAT=json`).

`RequestLog` wraps the whole ASGI application (Django and the MCP bridge alike). For each HTTP request it:
- takes the request id from `X-Request-ID` (up to 128 letters, digits, `.`, `_`, `-`, `:`), or makes one, and sends it
  back in the response's `X-Request-ID`;
- logs one line on the `hotcross.request` logger (INFO) when the response is done: method, path (never the query
  string), status, duration in ms, request id, and the developer id when a credential check established one
  (`note_developer`, called by the transports after a successful check of a key or an access token:
  `mcp_bridge.auth`, `api.views`). Never a header or a body: never a key or a token;
- times the request for `/metrics` (`hotcross_http_request_seconds`).

`JsonFormatter` writes every log record as one JSON object per line, whatever its logger (Django's `django.request`,
whose `record.request` is the HttpRequest; uvicorn's, routed to the same handler by `settings.LOGGING`), with the
request id, developer id and request fields of the request being served where there is one.
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import itertools
import json
import logging
import os
import re
import time
import uuid
from typing import Any

from infra import metrics
from infra.log_filters import redact

logger = logging.getLogger("hotcross.request")

_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("hotcross_request", default=None)
_FIELDS = ("request_id", "developer_id", "traceparent", "method", "path", "status", "duration_ms")
_WHILE_SERVED = _FIELDS[:5]  # what another log record written while the request is served carries
# W3C Trace Context (version 00 and later): version-trace id-parent id-flags, lower-case hex.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_id_prefix = os.urandom(8).hex()
_id_counter = itertools.count()


def _new_request_id() -> str:
    """32 hex digits, unique: 16 random ones per process, then a counter (a random id per request, a system call,
    cost ~3 % of a forwarded MCP call: bench/gateway_overhead.py)."""
    return f"{_id_prefix}{next(_id_counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def _new_process() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_process)  # a forked worker does not repeat its parent's ids


def note_developer(developer_id: uuid.UUID) -> None:
    """The request being served is this developer's (the request's line will say so)."""
    current = _current.get()
    if current is not None:
        current["developer_id"] = str(developer_id)


def note_trace(traceparent: object) -> None:
    """The client's W3C `traceparent` (an MCP request's `_meta`): the request's line carries it, and the gateway
    passes it on (`current_trace`). The HTTP header, read by `RequestLog`, wins; a malformed value is ignored."""
    current = _current.get()
    if current is not None and "traceparent" not in current and valid_trace(traceparent):
        current["traceparent"] = traceparent


def valid_trace(traceparent: object) -> bool:
    return isinstance(traceparent, str) and _TRACEPARENT.fullmatch(traceparent) is not None and traceparent[:2] != "ff"


def current_trace() -> str | None:
    """The `traceparent` of the request being served, if its client sent one."""
    current = _current.get()
    return current.get("traceparent") if current else None


def current_request_id() -> str | None:
    current = _current.get()
    return current["request_id"] if current else None


def _area(path: str) -> str:
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in ("mcp", "admin", "stripe", "metrics", "healthz", "api", "oauth") else "other"


@functools.cache
def _latency(area: str, status_class: int) -> Any:
    """The latency histogram's series for an area and status class (a few dozen at most), looked up once."""
    return metrics.HTTP_REQUEST_SECONDS.labels(area, f"{status_class}xx")


class RequestLog:
    """ASGI middleware: request id in and out, one log line and a latency sample per HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given: bytes | None = None
        trace: bytes | None = None
        for name, value in scope.get("headers", ()):  # one pass for both headers: every request comes here
            if name == b"x-request-id" and given is None:  # the first of each, as before
                given = value
            elif name == b"traceparent" and trace is None:
                trace = value
        given_id = (given or b"").decode("latin-1").strip()
        request_id = given_id if _ID.fullmatch(given_id) else _new_request_id()
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": scope.get("method", ""),
            "path": scope.get("path", ""),
            "status": 500,  # unless a response starts
        }
        if trace:
            trace_text = trace.decode("latin-1").strip()
            if valid_trace(trace_text):
                fields["traceparent"] = trace_text
        token = _current.set(fields)
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                fields["status"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            fields["duration_ms"] = round(seconds * 1000, 1)
            _latency(_area(fields["path"]), fields["status"] // 100).observe(seconds)
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "%s %s %s %.1f ms",
                    fields["method"],
                    fields["path"],
                    fields["status"],
                    fields["duration_ms"],
                    extra={"request": dict(fields)},
                )
            _current.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the request's fields, and the
    exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self._message(record),
        }
        # Our request line carries its fields as a dict in `request`; Django's `django.request` records carry the
        # HttpRequest there: those (and every other record) take the fields of the request being served.
        # (The status and duration only on the request's own line: while it is served they are not known yet.)
        request = getattr(record, "request", None)
        fields = _FIELDS
        if not isinstance(request, dict):
            request, fields = _current.get() or {}, _WHILE_SERVED
        for name in fields:
            value = request.get(name)
            if value is not None:
                out[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info or record.exc_text:
            out["exception"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)

    def _message(self, record: logging.LogRecord) -> str:
        try:
            return record.getMessage()
        except Exception:  # arguments that do not fit the message: still one JSON line
            return f"{record.msg!r} (log arguments that do not fit: {record.args!r})"
