"""Time in key-check tests, moved on instead of waited for: `refusal_within` (a change another process made reaches
this one's key-check memory when the memory expires) and `time_passes` (a remembered key's expiry or grace end)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from accounts import check_cache
from accounts.authentication import authenticate_key
from accounts.exceptions import KeyRefused

STEP_SECONDS = 0.05
ZERO = datetime.timedelta(0)


def refusal_within(key: str, seconds: float = 1.05) -> KeyRefused:
    """Check `key` until it is refused; the refusal. A change made by another process reaches this one's key-check
    memory only when the memory expires: between checks the memory's clock moves `STEP_SECONDS` on (its entries age
    as if that time had passed; nothing else does), so this takes no real time. Fails when the key still works once
    the clock has moved `seconds` on.

    The clock is put back at the end: what was remembered meanwhile (the refusal, say) then stays remembered up to
    `seconds` longer in real time — the autouse `_fresh_check_cache` fixture empties the memory after every test."""
    real_clock = check_cache.clock
    moved = 0.0
    check_cache.clock = lambda: real_clock() + moved
    try:
        while True:
            try:
                authenticate_key(key)
            except KeyRefused as exc:
                return exc
            if moved >= seconds:
                break
            moved = min(seconds, moved + STEP_SECONDS)
    finally:
        check_cache.clock = real_clock
    pytest.fail(f"the key still works after {seconds} s")


class _MovedTimezone:
    """`django.utils.timezone` as the key check sees it, with `now()` moved on."""

    def __init__(self, ahead: datetime.timedelta) -> None:
        self.ahead = ahead

    def now(self) -> datetime.datetime:
        return timezone.now() + self.ahead

    def __getattr__(self, name: str) -> Any:
        return getattr(timezone, name)


def time_passes(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The key check's clocks move `seconds` on, for the rest of the test, instead of waiting: its memory's
    (`accounts.check_cache.clock`: entries age) and the wall clock it compares a key's expiry or a grace period's end
    with (`timezone.now()` in `accounts.authentication` and in its refusal rules, `accounts.developer_check`). Called
    again, they move on further."""
    from accounts import authentication, developer_check

    current = authentication.timezone
    ahead = datetime.timedelta(seconds=seconds) + (current.ahead if isinstance(current, _MovedTimezone) else ZERO)
    monkeypatch.setattr(authentication, "timezone", _MovedTimezone(ahead))
    monkeypatch.setattr(developer_check, "timezone", _MovedTimezone(ahead))
    real_clock = check_cache.clock
    monkeypatch.setattr(check_cache, "clock", lambda: real_clock() + seconds)
