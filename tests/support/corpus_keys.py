"""Hostile keys, generated deterministically (see `tests.support.corpus`):

- `key_mutations(key, rng)`: strings that are *not* `key` (after surrounding whitespace is stripped) but look like it.
- `authorization_headers(rng, key)`: lists of `Authorization` header pairs that must not authenticate as `key`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import urllib.parse
from collections.abc import Iterator

from tests.support.corpus import Headers, header_values


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
