"""Hostile input, generated deterministically: the same seed gives the same corpus on every machine and every run.

Reusable pieces (each a generator taking a `random.Random`; endless unless said otherwise, so take what you need with
`itertools.islice`):

- `header_values(rng)`: bytes no header should carry (long, NUL, CR/LF, control characters, invalid UTF-8, …).
- `content_types(rng)`: `Content-Type` values, right and wrong.
- `json_documents(rng)`: bodies for any JSON endpoint: deep, huge, invalid, wrong types, odd numbers and keys.
- `json_values(rng, depth)`: one hostile JSON *value* (for a field of an otherwise valid document).

Beside it, built on these: `tests.support.corpus_keys` (keys that are not the key, `Authorization` headers that must
not authenticate) and `tests.support.corpus_mcp` (JSON-RPC / MCP messages, and whole hostile requests to `/mcp`).

Headers are ASGI-style `(name, value)` byte pairs (names lower-case), so anything, even what an HTTP parser would
refuse, can be sent to an app in-process.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

Headers = list[tuple[bytes, bytes]]


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
