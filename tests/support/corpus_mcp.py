"""Hostile MCP traffic, generated deterministically (see `tests.support.corpus`):

- `jsonrpc_bodies(rng)`: JSON-RPC / MCP messages with wrong envelopes, methods and parameter types, and batches.
- `mcp_requests(seed, count, key=...)`: whole requests for `/mcp` (`HostileRequest`), a mix of all the corpus's pieces;
  each says whether it carries the valid key untouched (`authorized`), so a test knows what must never be served.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.corpus import Headers, _pick, content_types, header_values, json_documents, json_values
from tests.support.corpus_keys import authorization_headers

MCP_METHODS = (
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "sampling/createMessage",
    "no/such/method",
    "",
)
TOOL_NAMES = ("whoami", "usage", "no_such_tool", "", "whoami\x00", "WHOAMI", "../whoami", "a" * 300)


@dataclass(frozen=True)
class HostileRequest:
    label: str  # what kind of hostility, for failure messages
    method: str
    headers: Headers
    body: bytes
    authorized: bool  # carries exactly the valid key, untouched (the rest may still be hostile)


def jsonrpc_bodies(rng: random.Random) -> Iterator[bytes]:
    """JSON-RPC / MCP messages that a client should not send (and a few right ones with wrong parameter types)."""
    ids = (1, 0, -1, "x", "", None, 1.5, True, [], {}, 2**70, "i" * 5000, "\x00")
    documents = json_documents(rng)
    while True:
        kind = rng.randrange(10)
        method = _pick(rng, MCP_METHODS)
        if kind <= 3:  # a well-formed envelope (mostly) with hostile params (mostly an object, as MCP wants)
            request_id = rng.randrange(10_000) if rng.random() < 0.7 else _pick(rng, ids)
            params = json_values(rng)
            if rng.random() < 0.6:
                params = {
                    _pick(rng, ("name", "arguments", "cursor", "uri", "level", "_meta", "ref", "x")): json_values(rng)
                    for _ in range(rng.randrange(1, 4))
                }
            message: object = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        elif kind == 4:  # tools/call and prompts/get with names and arguments of every wrong type
            message = {
                "jsonrpc": "2.0",
                "id": rng.randrange(1000),
                "method": rng.choice(("tools/call", "prompts/get")),
                "params": {
                    "name": rng.choice((*TOOL_NAMES, [], {}, 1, None, True, ["whoami"], {"name": "whoami"})),
                    "arguments": json_values(rng),
                    **({"_meta": json_values(rng)} if rng.random() < 0.3 else {}),
                },
            }
        elif kind == 5:  # a wrong envelope
            message = rng.choice(
                (
                    {"id": 1, "method": method},
                    {"jsonrpc": "1.0", "id": 1, "method": method},
                    {"jsonrpc": 2.0, "id": 1, "method": method},
                    {"jsonrpc": "2.0", "id": 1, "method": json_values(rng)},
                    {"jsonrpc": "2.0", "id": 1},
                    {"jsonrpc": "2.0", "id": 1, "result": json_values(rng)},
                    {"jsonrpc": "2.0", "id": 1, "error": json_values(rng)},
                    {"jsonrpc": "2.0", "id": 1, "error": {"code": "x", "message": 1}},
                    {"jsonrpc": "2.0", "method": method, "params": json_values(rng)},  # a notification
                )
            )
        elif kind == 6:  # batches (JSON-RPC arrays), which MCP's current transport does not take
            size = rng.choice((0, 1, 2, 2, 50, 50, 1000))
            message = [
                {"jsonrpc": "2.0", "id": n, "method": _pick(rng, MCP_METHODS), "params": json_values(rng)}
                if size <= 50
                else {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "whoami"}}
                for n in range(size)
            ]
        elif kind == 7:  # initialize with hostile client info and capabilities
            message = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": rng.choice(("2025-06-18", "1900-01-01", "", "x" * 1000, None, 1)),
                    "capabilities": json_values(rng),
                    "clientInfo": {"name": json_values(rng), "version": json_values(rng)},
                },
            }
        elif kind == 8:  # resources and completions with odd URIs and references
            message = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": rng.choice(("resources/read", "completion/complete", "resources/subscribe")),
                "params": {
                    "uri": rng.choice(("file:///etc/passwd", "", "x" * 10_000, "\x00", "http://[::1", 1, None)),
                    "ref": json_values(rng),
                    "argument": json_values(rng),
                },
            }
        else:
            yield next(documents)
            continue
        try:
            yield json.dumps(message).encode()
        except (ValueError, RecursionError):  # e.g. a value json cannot write; another one then
            continue


# --- whole requests to /mcp -------------------------------------------------------------------------------------------


def mcp_requests(seed: int, count: int, *, key: str, host: bytes = b"127.0.0.1:8000") -> Iterator[HostileRequest]:
    """`count` hostile requests to the MCP endpoint, deterministic for a `seed`.

    About two fifths carry a hostile `Authorization` (never the valid key on its own) with a harmless body; two
    fifths the valid key with a hostile body; the rest hostile other headers (content types, Accept, Host, Origin,
    MCP headers, many headers) or methods, with or without the key.
    """
    rng = random.Random(seed)
    auths = authorization_headers(rng, key)
    bodies = jsonrpc_bodies(rng)
    documents = json_documents(rng)
    types = content_types(rng)
    values = header_values(rng)
    valid = (b"authorization", b"Bearer " + key.encode())
    call = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    ).encode()
    base = [
        (b"host", host),
        (b"accept", b"application/json, text/event-stream"),
        (b"content-type", b"application/json"),
    ]
    for n in range(count):
        share = n % 5
        if share in (0, 1):
            body = call if rng.random() < 0.7 else next(bodies)
            yield HostileRequest("authorization", "POST", [*base, *next(auths)], body, authorized=False)
        elif share in (2, 3):
            body = next(bodies) if rng.random() < 0.75 else next(documents)
            yield HostileRequest("body", "POST", [*base, valid], body, authorized=True)
        else:
            authorized = rng.random() < 0.5
            headers = [(b"host", host)]
            kind = rng.randrange(8)
            label = "headers"
            method = "POST"
            if kind == 0:
                headers += [(b"content-type", next(types)), (b"accept", next(values))]
                label = "content-type/accept"
            elif kind == 1:
                headers = [
                    (b"host", rng.choice((b"evil.example", b"", b"127.0.0.1\x00", b"[::1", next(values)))),
                    (b"accept", b"application/json, text/event-stream"),
                    (b"content-type", b"application/json"),
                ]
                label = "host"
            elif kind == 2:
                origin = rng.choice((b"null", b"http://evil.example", b"http://[::1", b"file://", next(values)))
                headers += [*base[1:], (b"origin", origin)]
                label = "origin"
            elif kind == 3:
                name = rng.choice((b"mcp-session-id", b"mcp-protocol-version", b"last-event-id", b"mcp-method"))
                headers += [*base[1:], (name, next(values))]
                label = "mcp headers"
            elif kind == 4:
                headers += base[1:] + [(f"x-h{i}".encode(), next(values)[:100]) for i in range(rng.choice((50, 500)))]
                label = "many headers"
            elif kind == 5:
                method = rng.choice(("GET", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO"))
                headers += base[1:]
                label = "method"
            elif kind == 6:
                headers += [*base[1:], (b"content-length", rng.choice((b"-1", b"abc", b"99999999999", b"0")))]
                label = "content-length"
            else:
                headers += [*base[1:], (b"content-type", next(types))]
                label = "content-type"
            if authorized:
                headers.append(valid)
            yield HostileRequest(label, method, headers, next(bodies), authorized=authorized)
