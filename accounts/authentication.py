"""The key check: a developer's API key → `Principal`, or `KeyRefused` with a stable code and a message for people.

One rule set for every transport (MCP over stdio and HTTP, anything else that takes a key). Two entry points:
`authenticate_key` for sync code and `aauthenticate_key` for async code; both hash the key once and share the
per-process memory (`accounts.check_cache`) and the one database query.

Cold, a check is one query: the developer, its organization and the developer's place in the seat order together
(`DeveloperQuerySet.with_seat_rank`), compiled once per connection and kept prepared on PostgreSQL; nothing else,
even when `api_key_last_used_at` is due: a successful cold check only notes the use in memory (`accounts.last_used`),
and the note is written behind, batched with the metering flush, at most once a minute per developer. Warm, the
answer comes from this process's memory for at most a second.

Only a hash no developer holds now costs a second query: the keys rotations replaced (`ReplacedKey`). Such a key is
refused with `key_rotated` (or `key_revoked`, if it had been revoked), or works while its rotation's grace period lasts.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from accounts import check_cache, keys, last_used
from accounts.exceptions import KeyRefused
from accounts.models import Developer
from accounts.wording import plural
from infra import metrics, request_log
from infra.db import BOOKKEEPING, SharedReads

LAST_USED_RESOLUTION = last_used.RESOLUTION


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as established by a key check."""

    developer_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    organization_name: str
    subscription_status: str
    max_seats: int
    # The organization's own plan (`Organization.plan_id`); None: the default plan. What the plan allows is read
    # through `accounts.plans.terms_of(principal)` (a per-process table, at most a second old).
    plan_id: int | None = None


@dataclass(frozen=True, slots=True)
class _Checked:
    """What the key check remembers for up to a second: the outcome, and the expiry that time alone can change."""

    principal: Principal | None
    refusal: tuple[str, str] | None  # (code, message); a fresh exception is raised on every check
    expires_at: datetime.datetime | None
    # The refusal once `expires_at` has passed, when it is not `key_expired` (an old key whose grace period ends).
    at_expiry: tuple[str, str] | None = None


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
    """A key that works: counted for `/metrics`, and the request log's developer id."""
    _CHECKS_OK.inc()
    request_log.note_developer(principal.developer_id)
    return principal


def _hash_of(raw_key: str) -> str:
    """The stored form of a key (its SHA-256), or `invalid_key` before any work for what cannot be a key."""
    key = keys.normalize(raw_key)
    if key is None:
        raise _invalid_key()
    return keys.hash_key(key)


def _outcome(checked: _Checked) -> Principal:
    if checked.refusal is not None:
        raise KeyRefused(*checked.refusal)
    if checked.expires_at is not None and checked.expires_at <= timezone.now():
        raise KeyRefused(*checked.at_expiry) if checked.at_expiry else _expired(checked.expires_at)
    assert checked.principal is not None
    return checked.principal


# --- the query ----------------------------------------------------------------------------------------------------


class _KeyRow(NamedTuple):
    """The columns the key check reads, in the order of `_KEY_CHECK_FIELDS`."""

    developer_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    is_active: bool
    revoked_at: datetime.datetime | None
    expires_at: datetime.datetime | None
    last_used_at: datetime.datetime | None
    organization_name: str
    subscription_status: str
    max_seats: int
    beyond_seat_limit: bool
    plan_id: int | None


_KEY_CHECK_FIELDS = (
    "id",
    "organization_id",
    "email",
    "first_name",
    "last_name",
    "is_active",
    "api_key_revoked_at",
    "api_key_expires_at",
    "api_key_last_used_at",
    "organization__name",
    "organization__subscription_status",
    "organization__max_seats",
    "beyond_seat_limit",
    "organization__plan_id",
)
_HASH_PLACEHOLDER = "hotcross-key-hash-placeholder"


class _ReplacedRow(NamedTuple):
    """What the second query adds for a key a rotation replaced (`_REPLACED_KEY_FIELDS`)."""

    replaced_at: datetime.datetime
    revoked_at: datetime.datetime | None
    grace_until: datetime.datetime | None


_REPLACED_KEY_FIELDS = ("replaced_keys__replaced_at", "replaced_keys__revoked_at", "replaced_keys__grace_until")


def _check_in_database(key_hash: str) -> _Checked:
    """One query: the developer, its organization and whether the developer is beyond the seat limit. A hash no
    developer holds asks once more, among the keys rotations replaced; one that is not there either raises
    `invalid_key` (never remembered, so random guesses cannot fill the memory)."""
    connection = connections[DEFAULT_DB_ALIAS]
    with metrics.KEY_CHECK_SECONDS.time():
        row = _fetch_row(connection, _key_check_statement(connection), key_hash)
    if row is None:
        return _check_replaced_key(connection, key_hash)
    found = _KeyRow(*row)
    refusal = _refusal(found)
    principal = None
    if refusal is None:
        principal = _principal(found)
        last_used.note(found.developer_id, timezone.now(), found.last_used_at)  # written behind, not here
    checked = _Checked(
        principal=principal,
        refusal=None if refusal is None else (refusal.code, refusal.message),
        expires_at=found.expires_at,
    )
    check_cache.put(key_hash, checked)
    return checked


_cold_checks = SharedReads(BOOKKEEPING, _check_in_database)


def _check_replaced_key(connection: BaseDatabaseWrapper, key_hash: str) -> _Checked:
    """The miss path: a key a rotation replaced is refused with what happened to it, or works (as its developer, on
    the developer's seat) while its grace period lasts. Its last use is not recorded: `api_key_last_used_at` is the
    current key's."""
    row = _fetch_row(connection, _replaced_key_statement(connection), key_hash)
    if row is None:
        raise _invalid_key()
    found = _KeyRow(*row[: len(_KEY_CHECK_FIELDS)])
    replaced = _ReplacedRow(*row[len(_KEY_CHECK_FIELDS) :])
    rotated = _rotated(replaced.replaced_at, found.organization_name)
    refusal = _replaced_key_refusal(found, replaced, rotated)
    in_grace = refusal is None
    checked = _Checked(
        principal=_principal(found) if in_grace else None,
        refusal=None if in_grace else (refusal.code, refusal.message),
        expires_at=replaced.grace_until if in_grace else None,
        at_expiry=(rotated.code, rotated.message),
    )
    check_cache.put(key_hash, checked)
    return checked


def _principal(found: _KeyRow) -> Principal:
    return Principal(
        developer_id=found.developer_id,
        organization_id=found.organization_id,
        email=found.email,
        first_name=found.first_name,
        last_name=found.last_name,
        organization_name=found.organization_name,
        subscription_status=found.subscription_status,
        max_seats=found.max_seats,
        plan_id=found.plan_id,
    )


def _fetch_row(connection: BaseDatabaseWrapper, statement: tuple, key_hash: str) -> tuple | None:
    sql, params, hash_index, compiler, converters = statement
    params = params.copy()
    params[hash_index] = key_hash
    with _preparing_cursor(connection) as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is not None and converters:
        row = next(iter(compiler.apply_converters([row], converters)))
    return row


def _key_check_statement(connection: BaseDatabaseWrapper) -> tuple[str, list, int, SQLCompiler, dict]:
    """The key check's SQL, compiled by the ORM once per connection and then reused.

    Compiling this query costs several times more than PostgreSQL takes to run it, and the check is on every
    cold MCP request. The statement is still the ORM's (so it is right for every database backend) and rows go
    through the backend's own converters.
    """
    prepared = getattr(connection, "_hotcross_key_check", None)
    if prepared is None:
        prepared = _compiled(
            connection, Developer.objects.with_seat_rank().filter(api_key_hash=_HASH_PLACEHOLDER), _KEY_CHECK_FIELDS
        )
        connection._hotcross_key_check = prepared
    return prepared


def _replaced_key_statement(connection: BaseDatabaseWrapper) -> tuple[str, list, int, SQLCompiler, dict]:
    """The same columns for the developer whose replaced key has the hash, and the replaced key's own (compiled once
    per connection too)."""
    prepared = getattr(connection, "_hotcross_replaced_key_check", None)
    if prepared is None:
        prepared = _compiled(
            connection,
            Developer.objects.with_seat_rank().filter(replaced_keys__key_hash=_HASH_PLACEHOLDER),
            (*_KEY_CHECK_FIELDS, *_REPLACED_KEY_FIELDS),
        )
        connection._hotcross_replaced_key_check = prepared
    return prepared


def _compiled(
    connection: BaseDatabaseWrapper, queryset: Any, fields: tuple[str, ...]
) -> tuple[str, list, int, SQLCompiler, dict]:
    sql, params, compiler, converters = compile_query(connection, queryset, fields)
    return sql, params, params.index(_HASH_PLACEHOLDER), compiler, converters


def _preparing_cursor(connection: BaseDatabaseWrapper) -> Any:
    """A cursor whose statements PostgreSQL may keep prepared, where the database settings allow it.

    Planning the key check costs PostgreSQL more than running it. Django's own cursors bind parameters on the client,
    so every statement is planned again; a server-side binding cursor lets psycopg prepare a statement once it has
    run `prepare_threshold` times on a connection (the pool keeps connections, so it stays prepared). Only the key
    check uses it: `DATABASE_PREPARED_STATEMENTS=false` (behind a pooler that cannot keep prepared statements)
    removes `prepare_threshold`, and then this is Django's usual cursor.
    """
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = ServerBindingCursor(connection.connection)
    # Django's wrappers: database errors become Django's, and query logging (and counting, in tests) still works.
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


# --- what other credentials' checks share (`oauth.authentication`) -------------------------------------------------
# Public names for the pieces above: another check reads the same developer columns in its own one statement, and
# refuses with the same rules. (The private names above stay as they are.)

DeveloperRow = _KeyRow
"""The key check's developer columns, in the order of `DEVELOPER_CHECK_FIELDS`."""
DEVELOPER_CHECK_FIELDS = _KEY_CHECK_FIELDS
HASH_PLACEHOLDER = _HASH_PLACEHOLDER
Statement = tuple[str, list, int, SQLCompiler, dict]
"""A compiled check: SQL, parameters, where the hash goes among them, the compiler and its converters."""
preparing_cursor = _preparing_cursor


def compile_query(
    connection: BaseDatabaseWrapper, queryset: Any, fields: tuple[str, ...]
) -> tuple[str, list, SQLCompiler, dict]:
    """The ORM's SQL and parameters for `queryset.values_list(*fields)` (unordered) on `connection`, with the
    compiler and the converters its rows need (`fetch_row`)."""
    query = queryset.order_by().values_list(*fields).query
    compiler = query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    converters = compiler.get_converters([expression for expression, _, _ in compiler.select])
    return sql, list(params), compiler, converters


def fetch_row(connection: BaseDatabaseWrapper, statement: Statement, credential_hash: str) -> tuple | None:
    """The one row `statement` finds for the hash (through the backend's converters), as a prepared statement on
    PostgreSQL; None when there is none."""
    return _fetch_row(connection, statement, credential_hash)


def split_row(row: tuple) -> tuple[DeveloperRow, tuple]:
    """A row whose first columns are `DEVELOPER_CHECK_FIELDS`: the developer's part, and the rest."""
    return _KeyRow(*row[: len(_KEY_CHECK_FIELDS)]), tuple(row[len(_KEY_CHECK_FIELDS) :])


def principal_of(found: DeveloperRow) -> Principal:
    """The `Principal` of a developer the refusal rules let through."""
    return _principal(found)


# --- refusals -------------------------------------------------------------------------------------------------------


def _refusal(found: _KeyRow) -> KeyRefused | None:
    org_name = found.organization_name
    if found.revoked_at is not None:
        return _revoked(found.revoked_at, org_name)
    if found.expires_at is not None and found.expires_at <= timezone.now():
        return _expired(found.expires_at)
    if not found.is_active:
        return KeyRefused(
            KeyRefused.DEVELOPER_INACTIVE,
            f"The developer account {found.email} is deactivated. Ask an administrator of {org_name} to reactivate it.",
        )
    if found.subscription_status not in settings.HOTCROSS_ALLOWED_STATUSES:
        return KeyRefused(
            KeyRefused.SUBSCRIPTION_INACTIVE,
            f"{org_name}'s subscription is {found.subscription_status}, so its keys do not work. "
            "Keys work again as soon as the subscription is active; check billing.",
        )
    if found.beyond_seat_limit:
        held = "it is held by a developer" if found.max_seats == 1 else "they are held by developers"
        return KeyRefused(
            KeyRefused.SEAT_LIMIT_EXCEEDED,
            f"{org_name} has {plural(found.max_seats, 'seat')} and {held} who joined earlier. "
            "Ask an administrator to add seats or free one.",
        )
    return None


def developer_refusal(found: DeveloperRow) -> KeyRefused | None:
    """The refusal rules of the developer themself (revoked, expired, inactive, subscription, seats): what an OAuth
    access token, a web sign-in and a consent of the developer share with the key (`oauth.authentication`). The key's
    expiry is the end of the developer's access, whichever credential they use (README, "Keys")."""
    refusal = _refusal(found)
    if refusal is not None and refusal.code == KeyRefused.KEY_EXPIRED:
        return KeyRefused(
            KeyRefused.KEY_EXPIRED,
            f"Your access ended on {found.expires_at:%Y-%m-%d %H:%M} UTC, when your API key expired (for every "
            f"MCP client and sign-in). Ask an administrator of {found.organization_name} to extend it.",
        )
    return refusal


def _replaced_key_refusal(found: _KeyRow, replaced: _ReplacedRow, rotated: KeyRefused) -> KeyRefused | None:
    """Why a replaced key is refused, or None while its grace period lets it work. What stops the developer (a revoked
    key, a deactivation) is said first: "use the new key" would not help then."""
    if replaced.revoked_at is not None:  # it had been revoked before the rotation: it keeps that answer
        return _revoked(replaced.revoked_at, found.organization_name)
    refusal = _refusal(found._replace(expires_at=None))  # the current key's expiry is not the old key's
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


def _revoked(revoked_at: datetime.datetime, org_name: str) -> KeyRefused:
    return KeyRefused(
        KeyRefused.KEY_REVOKED,
        f"This API key was revoked on {revoked_at:%Y-%m-%d %H:%M} UTC. "
        f"Ask an administrator of {org_name} for a new key.",
    )


def _invalid_key() -> KeyRefused:
    return KeyRefused(
        KeyRefused.INVALID_KEY,
        "This API key is not valid. Check that you copied the whole key (it starts with hc_live_), "
        "or ask an administrator of your organization for a new one.",
    )


def _expired(expires_at: datetime.datetime) -> KeyRefused:
    return KeyRefused(
        KeyRefused.KEY_EXPIRED,
        f"This API key expired on {expires_at:%Y-%m-%d %H:%M} UTC. Ask an administrator of your organization "
        "to rotate it.",
    )
