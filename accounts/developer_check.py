"""The developer part of every credential check: the columns, read by name, and the refusal rules.

A key (`accounts.authentication`) and an OAuth access token (`oauth.authentication`) each find their developer in one
statement of their own, and both read the same developer part: `DeveloperRow`, whose fields are the names of
`DEVELOPER_FIELDS` (field → the ORM path it is read from: the developer, its organization and its seat rank,
`DeveloperQuerySet.with_seat_rank`). A compiled `Statement` knows the name of each of its columns, and every backend
reads its rows by name (`Statement.read`): adding a field to the developer part moves no other column a check reads.

The refusal rules (revoked, expired, inactive developer, inactive subscription, seat limit) and their messages are
here too (`key_refusal`, `developer_refusal`), with the one query for a developer's standing (`developer_row`).
"""

from __future__ import annotations

import datetime
import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from accounts.credentials import Principal
from accounts.exceptions import KeyRefused
from accounts.models import Developer
from accounts.wording import plural

Row = TypeVar("Row", bound=tuple)


class DeveloperRow(NamedTuple):
    """The developer part of a credential check's row (read by name: `DEVELOPER_FIELDS`)."""

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


DEVELOPER_FIELDS: dict[str, str] = {
    "developer_id": "id",
    "organization_id": "organization_id",
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "is_active": "is_active",
    "revoked_at": "api_key_revoked_at",
    "expires_at": "api_key_expires_at",
    "last_used_at": "api_key_last_used_at",
    "organization_name": "organization__name",
    "subscription_status": "organization__subscription_status",
    "max_seats": "organization__max_seats",
    "beyond_seat_limit": "beyond_seat_limit",
    "plan_id": "organization__plan_id",
}
"""Each `DeveloperRow` field and the ORM path (on `Developer.objects.with_seat_rank()`) it is read from."""

HASH_PLACEHOLDER = "hotcross-credential-hash-placeholder"
"""The parameter a statement is compiled with where the credential's hash goes (`Statement.hash_index`)."""


@dataclass(frozen=True, slots=True)
class Statement:
    """A compiled check: its SQL and parameters (the hash at `hash_index`), the compiler and the converters its rows
    go through, and the name of each column, in the SELECT's order."""

    sql: str
    params: list
    hash_index: int
    compiler: SQLCompiler
    converters: dict
    columns: tuple[str, ...]
    _readers: dict[type, Callable[[tuple], Any]] = field(default_factory=dict, repr=False, compare=False)

    def read(self, row: tuple, row_type: type[Row]) -> Row:
        """`row_type` (a NamedTuple) from a row of this statement, each field from the column of its name."""
        reader = self._readers.get(row_type)
        if reader is None:
            indices = [self.columns.index(name) for name in row_type._fields]
            getter = operator.itemgetter(*indices) if len(indices) > 1 else lambda found: (found[indices[0]],)
            make = row_type._make
            reader = self._readers[row_type] = lambda found: make(getter(found))
        return reader(row)


def compile_query(
    connection: BaseDatabaseWrapper, queryset: Any, fields: dict[str, str]
) -> tuple[str, list, SQLCompiler, dict]:
    """The ORM's SQL and parameters for `queryset.values_list(*fields.values())` (unordered) on `connection`, with the
    compiler and the converters its rows need. The columns come in the order of `fields`' names."""
    query = queryset.order_by().values_list(*fields.values()).query
    compiler = query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    converters = compiler.get_converters([expression for expression, _, _ in compiler.select])
    return sql, list(params), compiler, converters


def compiled(connection: BaseDatabaseWrapper, queryset: Any, fields: dict[str, str]) -> Statement:
    """`queryset`'s statement, its hash parameter compiled as `HASH_PLACEHOLDER`, its columns named by `fields`."""
    sql, params, compiler, converters = compile_query(connection, queryset, fields)
    return Statement(sql, params, params.index(HASH_PLACEHOLDER), compiler, converters, tuple(fields))


def prepared(
    connection: BaseDatabaseWrapper, name: str, build: Callable[[BaseDatabaseWrapper], Statement]
) -> Statement:
    """The statement `name` of this connection, built (compiled by the ORM) on its first use and then reused.

    Compiling a check's query costs several times more than PostgreSQL takes to run it, and a check is on every cold
    MCP request. The statement is still the ORM's (so it is right for every database backend) and rows go through
    the backend's own converters.
    """
    try:
        return connection._hotcross_credential_checks[name]
    except (AttributeError, KeyError):
        statements = connection.__dict__.setdefault("_hotcross_credential_checks", {})
        statement = statements[name] = build(connection)
        return statement


def fetch_row(connection: BaseDatabaseWrapper, statement: Statement, credential_hash: str) -> tuple | None:
    """The one row `statement` finds for the hash (through the backend's converters), as a prepared statement on
    PostgreSQL; None when there is none. Read it by name: `statement.read(row, RowType)`."""
    params = statement.params.copy()
    params[statement.hash_index] = credential_hash
    with preparing_cursor(connection) as cursor:
        cursor.execute(statement.sql, params)
        row = cursor.fetchone()
    if row is not None and statement.converters:
        row = next(iter(statement.compiler.apply_converters([row], statement.converters)))
    return row


def preparing_cursor(connection: BaseDatabaseWrapper) -> Any:
    """A cursor whose statements PostgreSQL may keep prepared, where the database settings allow it.

    Planning a credential check costs PostgreSQL more than running it. Django's own cursors bind parameters on the
    client, so every statement is planned again; a server-side binding cursor lets psycopg prepare a statement once it
    has run `prepare_threshold` times on a connection (the pool keeps connections, so it stays prepared). Only the
    credential checks use it: `DATABASE_PREPARED_STATEMENTS=false` (behind a pooler that cannot keep prepared
    statements) removes `prepare_threshold`, and then this is Django's usual cursor.
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


def developer_row(developer_id: uuid.UUID) -> DeveloperRow | None:
    """The developer part for one developer (an ordinary query: sign-in and consent ask it, not every request)."""
    row = Developer.objects.with_seat_rank().filter(pk=developer_id).values_list(*DEVELOPER_FIELDS.values()).first()
    return None if row is None else DeveloperRow(**dict(zip(DEVELOPER_FIELDS, row, strict=True)))


def principal_of(found: DeveloperRow) -> Principal:
    """The `Principal` of a developer the refusal rules let through."""
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


# --- refusals -------------------------------------------------------------------------------------------------------


def key_refusal(found: DeveloperRow) -> KeyRefused | None:
    """Why the developer's current key is refused (its own revocation or expiry first), or None."""
    org_name = found.organization_name
    if found.revoked_at is not None:
        return revoked(found.revoked_at, org_name)
    if found.expires_at is not None and found.expires_at <= timezone.now():
        return expired(found.expires_at)
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
    expiry is the end of the developer's access, whichever credential they use (docs/clients.md, "Keys")."""
    refusal = key_refusal(found)
    if refusal is not None and refusal.code == KeyRefused.KEY_EXPIRED:
        return KeyRefused(
            KeyRefused.KEY_EXPIRED,
            f"Your access ended on {found.expires_at:%Y-%m-%d %H:%M} UTC, when your API key expired (for every "
            f"MCP client and sign-in). Ask an administrator of {found.organization_name} to extend it.",
        )
    return refusal


def revoked(revoked_at: datetime.datetime, org_name: str) -> KeyRefused:
    return KeyRefused(
        KeyRefused.KEY_REVOKED,
        f"This API key was revoked on {revoked_at:%Y-%m-%d %H:%M} UTC. "
        f"Ask an administrator of {org_name} for a new key.",
    )


def expired(expires_at: datetime.datetime) -> KeyRefused:
    return KeyRefused(
        KeyRefused.KEY_EXPIRED,
        f"This API key expired on {expires_at:%Y-%m-%d %H:%M} UTC. Ask an administrator of your organization "
        "to rotate it.",
    )
