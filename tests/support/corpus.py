"""Hostile input, generated deterministically: the same seed gives the same corpus on every machine and every run.

Reusable pieces (each a generator taking a `random.Random`; endless unless said otherwise, so take what you need with
`itertools.islice`):

- `header_values(rng)`: bytes no header should carry (long, NUL, CR/LF, control characters, invalid UTF-8, …).
- `content_types(rng)`: `Content-Type` values, right and wrong.
- `json_documents(rng)`: bodies for any JSON endpoint: deep, huge, invalid, wrong types, odd numbers and keys.
- `json_values(rng, depth)`: one hostile JSON *value* (for a field of an otherwise valid document).
- `key_mutations(key, rng)`: strings that are *not* `key` (after surrounding whitespace is stripped) but look like it.
- `authorization_headers(rng, key)`: lists of `Authorization` header pairs that must not authenticate as `key`.
- `jsonrpc_bodies(rng)`: JSON-RPC / MCP messages with wrong envelopes, methods and parameter types, and batches.
- `mcp_requests(seed, count, key=...)`: whole requests for `/mcp` (`HostileRequest`), a mix of all the above; each says
  whether it carries the valid key untouched (`authorized`), so a test knows what must never be served.

Headers are ASGI-style `(name, value)` byte pairs (names lower-case), so anything, even what an HTTP parser would
refuse, can be sent to an app in-process.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]

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


def _pick(rng: random.Random, options: tuple | list) -> object:
    return options[rng.randrange(len(options))]


def _text(rng: random.Random, length: int) -> str:
    alphabet = "abcXYZ019_-+/=.:;,'\"\\ \t{}[]<>%$é€\u202e\u200b\U0001f600\x00\x1b\x7f\ud7ff\ufffd"
    return "".join(rng.choice(alphabet) for _ in range(length))


# --- headers ----------------------------------------------------------------------------------------------------------


def header_values(rng: random.Random) -> Iterator[bytes]:
    fixed = [
        b"",
        b" ",
        b"\t",
        b"\x00",
        b"a\x00b",
        b"\r\nx-injected: 1",
        b"\n",
        b"\xff\xfe\xfd",
        b"\xc3\x28",  # invalid UTF-8
        "é€😀".encode(),
        "é".encode("latin-1"),
        b"%00%0d%0a",
        b"\x1b[2J",
        b"\x7f" * 10,
        b"a" * 8 * 1024,
        b"a" * 64 * 1024,
        b'()<>@,;:\\"/[]?={}',
        b"' OR '1'='1",
        b"${jndi:ldap://x}",
        b"<script>alert(1)</script>",
    ]
    yield from fixed
    while True:
        kind = rng.randrange(4)
        if kind == 0:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        elif kind == 1:
            yield _text(rng, rng.randrange(1, 200)).encode("utf-8", "surrogatepass")
        elif kind == 2:
            yield _pick(rng, fixed) + _pick(rng, fixed)
        else:
            yield b"x" * rng.choice((256, 4096, 16384))


def content_types(rng: random.Random) -> Iterator[bytes]:
    fixed = [
        b"application/json",
        b"application/json; charset=utf-8",
        b"application/json; charset=utf-16",
        b"application/json; charset=\x00",
        b"application/JSON",
        b"application/json-seq",
        b"application/jsonx",
        b"text/plain",
        b"text/html",
        b"text/event-stream",
        b"multipart/form-data; boundary=x",
        b"application/x-www-form-urlencoded",
        b"application/octet-stream",
        b"*/*",
        b"",
        b";;;",
        b"application/json; " + b"a=b; " * 1000,
    ]
    yield from fixed
    values = header_values(rng)
    while True:
        yield _pick(rng, fixed) if rng.random() < 0.6 else next(values)


# --- JSON -------------------------------------------------------------------------------------------------------------


def json_values(rng: random.Random, depth: int = 0) -> object:
    """One hostile JSON value (as Python data; `json.dumps` it)."""
    kind = rng.randrange(16 if depth < 3 else 11)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice((0, -1, 2**31, 2**63, -(2**63) - 1, 10**30))
    if kind == 3:
        return rng.choice((0.5, -0.0, 1e308, -1e308, 5e-324))
    if kind == 4:
        return ""
    if kind == 5:
        return _text(rng, rng.randrange(1, 100))
    if kind == 6:
        return "x" * (70_000 if rng.random() < 0.05 else 1000)
    if kind == 7:
        return "\x00"
    if kind == 8:
        return "../../etc/passwd"
    if kind == 9:
        return []
    if kind == 10:
        return {}
    if kind == 11:
        return [json_values(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
    if kind == 12:
        return {_text(rng, rng.randrange(0, 8)): json_values(rng, depth + 1) for _ in range(rng.randrange(1, 4))}
    if kind == 13:
        return {"\x00": 1, "": None, "__proto__": {"x": 1}, "constructor": []}
    if kind == 14:
        return _nested(rng.choice((50, 200)), rng)
    return {"name": json_values(rng, depth + 1), "arguments": json_values(rng, depth + 1)}


def _nested(depth: int, rng: random.Random) -> object:
    value: object = rng.choice((1, "x", None))
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def json_documents(rng: random.Random) -> Iterator[bytes]:
    fixed = [
        b"",
        b" ",
        b"null",
        b"0",
        b"-1",
        b"1e999",
        b"-1e999",
        b"NaN",
        b"Infinity",
        b"true",
        b'"a string"',
        b"[]",
        b"{}",
        b"[" * 1000,
        b"{" * 1000,
        b'{"a":' * 5000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": "' + b"x" * 1_000_000 + b'"}',
        b"1" * 5000,  # beyond Python's int-from-string digits limit
        b'{"id": ' + b"9" * 5000 + b"}",
        b'{"a": 1,}',
        b"{'a': 1}",
        b'{"a": 1} trailing',
        b'{"a": 1}{"b": 2}',
        b'{"a": /* comment */ 1}',
        b'\xef\xbb\xbf{"a": 1}',  # BOM
        b'{"a": "\xff\xfe"}',  # invalid UTF-8
        '{"a": 1}'.encode("utf-16"),
        b'{"a": "\\ud800"}',  # lone surrogate
        b'{"a\x00b": 1}',
        b'{"a": "b\x00c"}',
        b'{"a": "\\u0000"}',
        b'{"a": 1, "a": 2}',
        b'{"' + b"k" * 100_000 + b'": 1}',
        b"\x00" * 100,
        bytes(range(256)),
        b'{"a": [1, 2, 3',
        b'"unterminated',
        b"\n\n\n",
    ]
    yield from fixed
    small = [document for document in fixed if len(document) < 10_000]
    while True:
        kind = rng.randrange(5)
        if kind == 0:
            yield json.dumps(json_values(rng)).encode()
        elif kind == 1:
            document = json.dumps(json_values(rng)).encode()
            cut = rng.randrange(len(document) + 1)
            yield document[:cut]
        elif kind == 2:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        elif kind == 3:
            depth = rng.choice((500, 990, 1000, 3000, 10_000))
            opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
            yield opener * depth + b"1" + closer * depth
        else:
            yield _pick(rng, small)  # the big ones were given once above


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


# --- keys and the Authorization header --------------------------------------------------------------------------------


def key_mutations(key: str, rng: random.Random) -> Iterator[str]:
    """Strings that are not `key` once surrounding whitespace is stripped, but are close to it or to what an
    attacker would try. Endless; the first ones are fixed."""
    body = key.split("_", 2)[-1]
    fixed = [
        "",
        key[:-1],
        key[1:],
        key + "x",
        key + "\x00",
        "\x00" + key,
        key[:10] + "\x00" + key[10:],
        key.upper(),
        key.lower(),
        key[::-1],
        key[:8],
        key[:12],
        key[:-1] + ("A" if key[-1] != "A" else "B"),
        key.replace("_", "-"),
        key.replace("a", "\u0430"),  # Cyrillic a
        key[:20] + " " + key[20:],
        key[:20] + "\u200b" + key[20:],
        key * 2,
        "hc_test_" + body,
        "mp_live_" + body,
        "hc_live_" + body[:-1],
        "hc_live_",
        "hc_live_" + "0" * 40,
        "hc_live_" + "a" * 256,
        "hc_live_" + "a" * 10_000,
        hashlib.sha256(key.encode()).hexdigest(),
        base64.b64encode(key.encode()).decode(),
        urllib.parse.quote(key, safe=""),
        '"' + key + '"',
        key + ";",
        key + "," + key,
        "' OR '1'='1",
        "hc_live_' OR '1'='1' --",
        "hc_live_%",
        "hc_live_*",
        "null",
        "undefined",
        "Bearer " + key,
        "\u00e9" * 40,
    ]
    mutations = itertools.chain(fixed, _random_mutations(key, rng))
    for candidate in mutations:
        if candidate.strip() != key:
            yield candidate


def _random_mutations(key: str, rng: random.Random) -> Iterator[str]:
    while True:
        chars = list(key)
        for _ in range(rng.randrange(1, 4)):
            position = rng.randrange(len(chars))
            action = rng.randrange(3)
            if action == 0:
                chars[position] = rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_\x00é")
            elif action == 1:
                del chars[position]
            else:
                chars.insert(position, rng.choice("aZ9_ \x00\t€"))
        yield "".join(chars)


def _encode_key(value: str, rng: random.Random) -> bytes:
    return value.encode("latin-1") if rng.random() < 0.5 and _latin1(value) else value.encode("utf-8", "surrogatepass")


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def authorization_headers(rng: random.Random, key: str) -> Iterator[Headers]:
    """`Authorization` headers (zero, one or several) that must not authenticate as `key`."""
    valid = b"Bearer " + key.encode()
    mutations = key_mutations(key, rng)
    values = header_values(rng)
    while True:
        kind = rng.randrange(9)
        if kind <= 2:
            scheme = rng.choice((b"Bearer ", b"bearer ", b"BEARER ", b"Bearer  ", b"Bearer\t"))
            yield [(b"authorization", scheme + _encode_key(next(mutations), rng))]
        elif kind == 3:
            scheme = rng.choice((b"Basic ", b"Token ", b"Digest ", b"Bearer", b"", b"Bearer:", b"Bearer=", b"ApiKey "))
            yield [(b"authorization", scheme + key.encode())]
        elif kind == 4:
            yield [(b"authorization", b"Basic " + base64.b64encode(key.encode() + b":"))]
        elif kind == 5:  # several Authorization headers, the valid one among them
            others = [(b"authorization", rng.choice((valid, b"Bearer " + _encode_key(next(mutations), rng))))]
            pair = [(b"authorization", valid), *others]
            rng.shuffle(pair)
            yield pair
        elif kind == 6:
            yield [(b"authorization", next(values))]
        elif kind == 7:
            yield []  # none at all, perhaps with look-alike headers
            continue
        else:  # the key in other headers than Authorization
            name = rng.choice((b"x-api-key", b"api-key", b"x-auth-token", b"proxy-authorization", b"cookie"))
            yield [(name, key.encode()), (name, valid)]


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
