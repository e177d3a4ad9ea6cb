"""A fixed corpus of 10 000 hostile requests against `/mcp`, in-process (the bridge's ASGI app, its real middlewares and
the real key check against the test database):

- nothing is served without the valid key (no hostile key, header or combination is accepted);
- no answer is a 500, and no JSON-RPC error is a server error (code 0 or -32603: an exception nobody handled);
- nothing is logged with a traceback.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from dataclasses import dataclass

import anyio
import pytest

from mcp_bridge.http import MCPHttpApp
from mcp_bridge.server import build_server
from tests.factories import DeveloperFactory
from tests.support.corpus_mcp import HostileRequest, mcp_requests

pytestmark = pytest.mark.django_db(transaction=True)

SEED = 20261203
COUNT = 10_000
HOST = b"127.0.0.1:8000"
SERVED = (200, 202)
SERVER_ERRORS = (0, -32603)


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def send(app: MCPHttpApp, request: HostileRequest) -> Answer:
    """One request through the ASGI app, as a server would hand it over."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": request.headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    answered = anyio.Event()
    sent_body = False
    status = 0
    headers: dict[bytes, bytes] = {}
    chunks: list[bytes] = []

    async def receive() -> dict:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send_(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.update(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                answered.set()

    try:
        with anyio.fail_after(10):  # an answer that never ends (an event stream) fails here
            await app(scope, receive, send_)
    except Exception as exc:  # what a server would turn into a 500
        return Answer(500, {}, repr(exc).encode()[:200])
    return Answer(status, headers, b"".join(chunks))


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def problems_of(request: HostileRequest, answer: Answer) -> list[str]:
    problems = []
    if answer.status >= 500:
        problems.append(f"HTTP {answer.status}")
    if not request.authorized and (answer.status in SERVED or b'"result"' in answer.body):
        problems.append(f"served without the valid key (HTTP {answer.status})")
    if request.label == "host" and answer.status != 421:
        problems.append(f"a bad Host got HTTP {answer.status}")
    if request.label == "origin" and answer.status != 403:
        problems.append(f"a bad Origin got HTTP {answer.status}")
    if answer.headers.get(b"content-type", b"").startswith(b"application/json") and answer.body:
        try:
            document = json.loads(answer.body)
        except ValueError:
            problems.append("a JSON answer that is not JSON")
        else:
            for message in document if isinstance(document, list) else [document]:
                error = message.get("error") if isinstance(message, dict) else None
                if isinstance(error, dict) and error.get("code") in SERVER_ERRORS:
                    problems.append(f"JSON-RPC server error {error.get('code')}: {str(error.get('message'))[:80]}")
    return problems


def test_ten_thousand_hostile_requests_get_no_500_no_traceback_and_nothing_served_without_the_key(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    settings.HOTCROSS_MCP_TOOLS = []
    developer = DeveloperFactory()
    app = MCPHttpApp(build_server())
    control = HostileRequest(
        "control",
        "POST",
        [
            (b"host", HOST),
            (b"accept", b"application/json, text/event-stream"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + developer.plain_key.encode()),
        ],
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}',
        authorized=True,
    )
    captured = Captured()
    root = logging.getLogger()
    root.addHandler(captured)
    failures: list[str] = []
    counts = {"requests": 0, "authorized": 0}
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()

    async def scenario() -> tuple[Answer, Answer]:
        async with app.running():
            first = await send(app, control)
            for request in mcp_requests(SEED, COUNT, key=developer.plain_key, host=HOST):
                answer = await send(app, request)
                counts["requests"] += 1
                counts["authorized"] += request.authorized
                statuses[request.label, answer.status] += 1
                failures.extend(
                    f"{request.label} {request.method} {request.body[:60]!r} {request.headers[-1][1][:40]!r}: {p}"
                    for p in problems_of(request, answer)
                )
            last = await send(app, control)
        return first, last

    started = time.monotonic()
    try:
        first, last = anyio.run(scenario)
    finally:
        root.removeHandler(captured)
    took = time.monotonic() - started

    # The harness can be served: the valid key works before and after the corpus.
    assert first.status == 200 and b'"result"' in first.body, first
    assert last.status == 200 and b'"result"' in last.body, last
    assert counts["requests"] == COUNT
    assert 0 < counts["authorized"] < COUNT
    print(sorted(statuses.items()))  # shown with -s: what the corpus met
    # Not vacuous: most hostile bodies with the valid key reached the MCP server and got a JSON-RPC answer.
    assert statuses["body", 200] > 1_000
    assert statuses["authorization", 401] > 3_000
    assert failures == [], f"{len(failures)} problems, the first: {failures[:10]}"
    tracebacks = [r for r in captured.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == [], [r.getMessage()[:200] for r in tracebacks[:5]]
    # One-line warnings about a client's malformed messages are fine (the SDK drops a malformed notification with one);
    # an error would be the server's own failure.
    errors = [r for r in captured.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage()[:200] for r in errors[:5]]
    assert took < 60, f"{COUNT} requests took {took:.1f} s"
