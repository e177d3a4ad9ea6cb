"""Waiting for a key to be refused, where the change comes from another process."""

from __future__ import annotations

import time

import pytest

from accounts.authentication import authenticate_key
from accounts.exceptions import KeyRefused


def refusal_within(key: str, seconds: float = 1.05) -> KeyRefused:
    """Check `key` until it is refused (a change made by another process reaches this one's key-check memory only
    when the memory expires); the refusal. Fails when the key still works after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            authenticate_key(key)
        except KeyRefused as exc:
            return exc
        time.sleep(0.05)
    pytest.fail(f"the key still works after {seconds} s")
