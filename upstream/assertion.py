"""The caller's signed identity assertion on every request forwarded to an HTTP upstream: a short-lived JWT (EdDSA,
Ed25519; PyJWT) in the `X-Hotcross-Caller` header, so an upstream can trust who the gateway says calls without
trusting anything else in the request.

Claims: `iss` (the back office's public URL), `aud` (the upstream's URL, as the gateway calls it: a token for one
upstream is refused by another), `sub` (the developer's id), `hotcross/organization_id`, `hotcross/plan` (the plan's
code, or null: no plan), `iat`, `nbf`, `exp` (`LIFETIME` seconds), `jti`. The header's `kid` names the key in the
published key set (`jwks`, served at `/.well-known/jwks.json`). A token is reused for the same caller while more than
half its life is left (a signature costs about 60 µs; the cache keeps the forwarded path's cost per call flat).

The key is an Ed25519 private key in a PEM file (`HOTCROSS_MCP_UPSTREAM_ASSERTION_KEY`), made on first use (mode
0600; several processes racing make it once). Every host that forwards must use the same file for one key set.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HEADER = "X-Hotcross-Caller"
LIFETIME = 60  # seconds a token is valid
MAX_CACHED = 10_000  # callers whose token is kept (then the cache starts over)
META_DEVELOPER_ID = "hotcross/developer_id"
META_ORGANIZATION_ID = "hotcross/organization_id"
META_PLAN = "hotcross/plan"


class AssertionKeyError(RuntimeError):
    """The key file cannot be read or made, or holds no Ed25519 private key."""


@functools.cache
def private_key(path: str) -> Ed25519PrivateKey:
    """The key in `path`, made there first if there is none (0600; a process that loses the race reads the winner's)."""
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    try:
        key = serialization.load_pem_private_key(file.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise AssertionKeyError(f"the assertion key {path} cannot be read ({exc.__class__.__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AssertionKeyError(f"the assertion key {path} is not an Ed25519 private key")
    return key


def key_id(public: Ed25519PublicKey) -> str:
    """The key's RFC 7638 thumbprint (its `kid`)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = _b64(raw)
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % x  # noqa: UP031 - the RFC's exact member order
    return _b64(hashlib.sha256(canonical.encode()).digest())


def jwks(path: str) -> dict[str, Any]:
    """The published key set: the public half of the key in `path`."""
    public = private_key(path).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw), "kid": key_id(public), "alg": "EdDSA", "use": "sig"}
    return {"keys": [key]}


class Asserter:
    """Tokens for one upstream (`audience`), signed with the key in `key_path`."""

    def __init__(self, key_path: str, issuer: str, audience: str) -> None:
        self._key = private_key(key_path)
        self._kid = key_id(self._key.public_key())
        self.issuer = issuer
        self.audience = audience
        self._cache: dict[tuple[Any, Any, Any], tuple[float, str]] = {}

    def header(self, meta: Mapping[str, Any] | None) -> dict[str, str]:
        """The header naming the caller in a forwarded request's `_meta`; none for a request without a caller."""
        developer = (meta or {}).get(META_DEVELOPER_ID)
        if not developer:
            return {}
        organization, plan = meta.get(META_ORGANIZATION_ID), meta.get(META_PLAN)  # type: ignore[union-attr]
        now = time.time()
        cached = self._cache.get((developer, organization, plan))
        if cached is not None and cached[0] - now > LIFETIME / 2:
            return {HEADER: cached[1]}
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": developer,
            META_ORGANIZATION_ID: organization,
            META_PLAN: plan,
            "iat": int(now),
            "nbf": int(now) - 5,
            "exp": int(now) + LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self._kid})
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[(developer, organization, plan)] = (now + LIFETIME, token)
        return {HEADER: token}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
