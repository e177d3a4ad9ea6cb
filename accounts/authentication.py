"""The key check: a developer's API key → `Principal`, or `KeyRefused` with a stable code and a message for people.

The credential backend of API keys (`KeyBackend`, `hc_live_…` and legacy `mp_live_…`) behind the door
`accounts.credentials.authenticate`, and two entry points of its own: `authenticate_key` for sync code and
`aauthenticate_key` for async code; both hash the key once and share the per-process memory
(`accounts.check_cache`) and the one database query.

Cold, a check is one query: the developer part (`accounts.developer_check`: the developer, its organization and the
developer's place in the seat order, `DeveloperQuerySet.with_seat_rank`), compiled once per connection and kept
prepared on PostgreSQL; nothing else, even when `api_key_last_used_at` is due: a successful cold check only notes the
use in memory (`accounts.last_used`), and the note is written behind, batched with the metering flush, at most once a
minute per developer. Warm, the answer comes from this process's memory for at most a second.

Only a hash no developer holds now costs a second query: the keys rotations replaced (`ReplacedKey`). Such a key is
refused with `key_rotated` (or `key_revoked`, if it had been revoked), or works while its rotation's grace period lasts.

The request log's developer id is the transport's to note (`infra.request_log.note_developer`), not the check's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from accounts import check_cache, keys, last_used
from accounts.credentials import API_KEY, Caller, Principal
from accounts.developer_check import (
    DEVELOPER_FIELDS,
    HASH_PLACEHOLDER,
    DeveloperRow,
    Statement,
    compiled,
    expired,
    fetch_row,
    key_refusal,
    prepared,
    principal_of,
    revoked,
)
from accounts.exceptions import KeyRefused
from accounts.models import Developer
from infra import metrics
from infra.db import BOOKKEEPING, SharedReads

__all__ = ["KeyBackend", "Principal", "aauthenticate_key", "authenticate_key"]

LAST_USED_RESOLUTION = last_used.RESOLUTION


@dataclass(frozen=True, slots=True)
class _CheckedKey:
    """What the key check remembers for up to a second: the outcome, and the expiry that time alone can change."""

    principal: Principal | None
    refusal: tuple[str, str] | None  # (code, message); a fresh exception is raised on every check
    expires_at: datetime.datetime | None
    # The refusal once `expires_at` has passed, when it is not `key_expired` (an old key whose grace period ends).
    at_expiry: tuple[str, str] | None = None


class KeyBackend:
    """The credential backend of API keys (`accounts.credentials`): a value shaped like a key is its kind."""

    kind = API_KEY

    def recognizes(self, credential: str) -> bool:
        return keys.normalize(credential) is not None

    def authenticate(self, credential: str) -> Caller:
        return Caller(authenticate_key(credential), API_KEY)

    async def aauthenticate(self, credential: str) -> Caller:
        return Caller(await aauthenticate_key(credential), API_KEY)


# --- the two entry points -------------------------------------------------------------------------------------------


def authenticate_key(raw_key: str) -> Principal:
    """The developer a key belongs to, or `KeyRefused` with a stable `.code` and a message a person can act on."""
    try:
        key_hash = _hash_of(raw_key)
        checked = check_cache.get(key_hash)
        if checked is None:
            checked = _check_in_database(key_hash)
        return _counted(_outcome(checked))
    except KeyRefused as refusal:
        metrics.KEY_CHECKS.labels(refusal.code).inc()
        raise


async def aauthenticate_key(raw_key: str | None) -> Principal:
    """`authenticate_key` for async code. Raises `KeyRefused`, or `infra.db.DatabaseUnavailable` when the check
    cannot be made.

    A key remembered from the last second is answered on the event loop. Otherwise the check runs on the bookkeeping
    threads (`infra.db`), which give their connection back after every check; while one check of a key is under
    way, other requests with the same key wait for it instead of each asking the database.
    """
    try:
        key_hash = _hash_of(raw_key or "")
        checked = check_cache.get(key_hash)
        if checked is None:
            checked = await _cold_checks.read(key_hash)
        return _counted(_outcome(checked))
    except KeyRefused as refusal:
        metrics.KEY_CHECKS.labels(refusal.code).inc()
        raise


_CHECKS_OK = metrics.KEY_CHECKS.labels("ok")


def _counted(principal: Principal) -> Principal:
    """A key that works: counted for `/metrics`."""
    _CHECKS_OK.inc()
    return principal


def _hash_of(raw_key: str) -> str:
    """The stored form of a key (its SHA-256), or `invalid_key` before any work for what cannot be a key."""
    key = keys.normalize(raw_key)
    if key is None:
        raise _invalid_key()
    return keys.hash_key(key)


def _outcome(checked: _CheckedKey) -> Principal:
    if checked.refusal is not None:
        raise KeyRefused(*checked.refusal)
    if checked.expires_at is not None and checked.expires_at <= timezone.now():
        raise KeyRefused(*checked.at_expiry) if checked.at_expiry else expired(checked.expires_at)
    assert checked.principal is not None
    return checked.principal


# --- the query ----------------------------------------------------------------------------------------------------


class _ReplacedRow(NamedTuple):
    """What the second query adds for a key a rotation replaced (`_REPLACED_KEY_FIELDS`)."""

    replaced_at: datetime.datetime
    replaced_revoked_at: datetime.datetime | None  # the replaced key's own revocation (before its rotation)
    grace_until: datetime.datetime | None


_REPLACED_KEY_FIELDS = {
    "replaced_at": "replaced_keys__replaced_at",
    "replaced_revoked_at": "replaced_keys__revoked_at",
    "grace_until": "replaced_keys__grace_until",
}


def _check_in_database(key_hash: str) -> _CheckedKey:
    """One query: the developer, its organization and whether the developer is beyond the seat limit. A hash no
    developer holds asks once more, among the keys rotations replaced; one that is not there either raises
    `invalid_key` (never remembered, so random guesses cannot fill the memory)."""
    connection = connections[DEFAULT_DB_ALIAS]
    with metrics.KEY_CHECK_SECONDS.time():
        statement = prepared(connection, "key", _key_check_statement)
        row = fetch_row(connection, statement, key_hash)
    if row is None:
        return _check_replaced_key(connection, key_hash)
    found = statement.read(row, DeveloperRow)
    refusal = key_refusal(found)
    principal = None
    if refusal is None:
        principal = principal_of(found)
        last_used.note(found.developer_id, timezone.now(), found.last_used_at)  # written behind, not here
    checked = _CheckedKey(
        principal=principal,
        refusal=None if refusal is None else (refusal.code, refusal.message),
        expires_at=found.expires_at,
    )
    check_cache.put(key_hash, checked)
    return checked


_cold_checks = SharedReads(BOOKKEEPING, _check_in_database)


def _check_replaced_key(connection: BaseDatabaseWrapper, key_hash: str) -> _CheckedKey:
    """The miss path: a key a rotation replaced is refused with what happened to it, or works (as its developer, on
    the developer's seat) while its grace period lasts. Its last use is not recorded: `api_key_last_used_at` is the
    current key's."""
    statement = prepared(connection, "replaced_key", _replaced_key_statement)
    row = fetch_row(connection, statement, key_hash)
    if row is None:
        raise _invalid_key()
    found = statement.read(row, DeveloperRow)
    replaced = statement.read(row, _ReplacedRow)
    rotated = _rotated(replaced.replaced_at, found.organization_name)
    refusal = _replaced_key_refusal(found, replaced, rotated)
    in_grace = refusal is None
    checked = _CheckedKey(
        principal=principal_of(found) if in_grace else None,
        refusal=None if in_grace else (refusal.code, refusal.message),
        expires_at=replaced.grace_until if in_grace else None,
        at_expiry=(rotated.code, rotated.message),
    )
    check_cache.put(key_hash, checked)
    return checked


def _key_check_statement(connection: BaseDatabaseWrapper) -> Statement:
    """The key check's SQL: the developer part of the developer who holds the hash."""
    developers = Developer.objects.with_seat_rank().filter(api_key_hash=HASH_PLACEHOLDER)
    return compiled(connection, developers, DEVELOPER_FIELDS)


def _replaced_key_statement(connection: BaseDatabaseWrapper) -> Statement:
    """The same developer part for the developer whose replaced key has the hash, and the replaced key's own
    columns."""
    developers = Developer.objects.with_seat_rank().filter(replaced_keys__key_hash=HASH_PLACEHOLDER)
    return compiled(connection, developers, {**DEVELOPER_FIELDS, **_REPLACED_KEY_FIELDS})


# --- refusals of keys a rotation replaced, and of what cannot be a key ----------------------------------------------


def _replaced_key_refusal(found: DeveloperRow, replaced: _ReplacedRow, rotated: KeyRefused) -> KeyRefused | None:
    """Why a replaced key is refused, or None while its grace period lets it work. What stops the developer (a revoked
    key, a deactivation) is said first: "use the new key" would not help then."""
    if replaced.replaced_revoked_at is not None:  # it had been revoked before the rotation: it keeps that answer
        return revoked(replaced.replaced_revoked_at, found.organization_name)
    refusal = key_refusal(found._replace(expires_at=None))  # the current key's expiry is not the old key's
    if refusal is not None and refusal.code in (KeyRefused.KEY_REVOKED, KeyRefused.DEVELOPER_INACTIVE):
        return refusal
    if replaced.grace_until is None or replaced.grace_until <= timezone.now():
        return rotated
    return refusal


def _rotated(replaced_at: datetime.datetime, org_name: str) -> KeyRefused:
    return KeyRefused(
        KeyRefused.KEY_ROTATED,
        f"This key was replaced by a newer one on {replaced_at:%Y-%m-%d %H:%M} UTC. "
        f"Use the new key, or ask an administrator of {org_name}.",
    )


def _invalid_key() -> KeyRefused:
    return KeyRefused(
        KeyRefused.INVALID_KEY,
        "This API key is not valid. Check that you copied the whole key (it starts with hc_live_), "
        "or ask an administrator of your organization for a new one.",
    )
