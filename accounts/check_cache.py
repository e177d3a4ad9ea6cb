"""A per-process, at-most-one-second memory of credential checks: API keys (by hash, `accounts.authentication`) and
OAuth access tokens (by `"oauth:"` + checksum, `oauth.authentication`), side by side.

Only a credential the database knows is remembered (unknown ones are never stored, so random guesses cannot fill
memory).
Writes through `accounts.services` clear this process's memory at once; other processes see a change when their
entry expires, which is at most `HOTCROSS_KEY_CACHE_SECONDS` (capped at 1 s) later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

MAX_SECONDS = 1.0
MAX_ENTRIES = 50_000

_entries: dict[str, tuple[float, Any]] = {}
clock: Callable[[], float] = time.monotonic


def ttl() -> float:
    return max(0.0, min(float(getattr(settings, "HOTCROSS_KEY_CACHE_SECONDS", MAX_SECONDS)), MAX_SECONDS))


def get(credential_hash: str) -> Any | None:
    entry = _entries.get(credential_hash)
    if entry is None:
        return None
    if entry[0] <= clock():
        _entries.pop(credential_hash, None)
        return None
    return entry[1]


def put(credential_hash: str, value: Any) -> None:
    seconds = ttl()
    if seconds <= 0:
        return
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[credential_hash] = (clock() + seconds, value)


def clear() -> None:
    _entries.clear()
