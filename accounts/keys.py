"""API key format: generate, hash, display prefix, shape check. Pure functions, no ORM.

A key is `hc_live_` followed by 40 base62 characters from `secrets` (about 238 bits). What is stored is the SHA-256
hex digest of the whole key — the same as the legacy system stored — so keys issued by the old system (`hc_live_…` or
the older `mp_live_…`) validate by their hash alone, whatever their length or alphabet.
"""

from __future__ import annotations

import hashlib
import secrets
import string

KEY_PREFIX = "hc_live_"
LEGACY_PREFIXES = ("mp_live_",)
ACCEPTED_PREFIXES = (KEY_PREFIX, *LEGACY_PREFIXES)
ALPHABET = string.ascii_letters + string.digits  # base62
SECRET_LENGTH = 40
# Longer inputs are refused before hashing, so an attacker cannot make us hash megabytes per request.
MAX_KEY_LENGTH = 256
DISPLAY_PREFIX_LENGTH = 12  # "hc_live_" + 4 characters: enough to tell keys apart in a list, useless to an attacker


def generate_key() -> str:
    """A new plain key. Show it once; store only `hash_key(key)`."""
    return KEY_PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))


def hash_key(raw_key: str) -> str:
    """SHA-256 hex of the whole key, as stored in `Developer.api_key_hash`."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def display_prefix(raw_key: str) -> str:
    """The short, non-secret beginning of a key shown in lists (`hc_live_Ab3x`)."""
    return raw_key[:DISPLAY_PREFIX_LENGTH]


def normalize(raw_key: object) -> str | None:
    """The key to hash, or None when the input cannot be a key (wrong type, too long, unknown prefix).

    Length is checked before any copy is made, so memory use does not grow with the input. Surrounding
    whitespace (a pasted newline in an environment variable) is forgiven.
    """
    if not isinstance(raw_key, str) or len(raw_key) > MAX_KEY_LENGTH:
        return None
    key = raw_key.strip()
    if not key.startswith(ACCEPTED_PREFIXES) or len(key) <= len(KEY_PREFIX):
        return None
    return key
