"""Reads of the accounts domain used by more than one caller, and the public key check."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, TruncDate
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from accounts import key_cache, keys
from accounts.connections import close_thread_connections
from accounts.exceptions import KeyRefused, NotFound
from accounts.models import Developer, Organization, UsageEvent

LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


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


@dataclass(frozen=True, slots=True)
class _Checked:
    """What the key check remembers for up to a second: the outcome, and the expiry that time alone can change."""

    principal: Principal | None
    refusal: tuple[str, str] | None  # (code, message); a fresh exception is raised on every check
    expires_at: datetime.datetime | None


# --- organizations and seats ----------------------------------------------------------------------------------------


def get_organization(organization_id: uuid.UUID | str) -> Organization:
    try:
        return Organization.objects.get(pk=_as_uuid(organization_id, "organization"))
    except Organization.DoesNotExist:
        raise NotFound(f"No organization has the id {organization_id}.") from None


def get_developer(developer_id: uuid.UUID | str) -> Developer:
    try:
        return Developer.objects.select_related("organization").get(pk=_as_uuid(developer_id, "developer"))
    except Developer.DoesNotExist:
        raise NotFound(f"No developer has the id {developer_id}.") from None


def seats_in_use(organization: Organization | uuid.UUID) -> int:
    org_id = organization.pk if isinstance(organization, Organization) else organization
    return Developer.objects.seat_holders().filter(organization_id=org_id).count()


def organizations_with_seats() -> QuerySet[Organization]:
    """Organizations annotated with `seats_used`, `developer_count` and `over_seat_limit` (one query)."""
    holders = (
        Developer.objects.seat_holders()
        .filter(organization=OuterRef("pk"))
        .order_by()
        .values("organization")
        .annotate(n=Count("pk"))
        .values("n")
    )
    everyone = (
        Developer.objects.filter(organization=OuterRef("pk"))
        .order_by()
        .values("organization")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Organization.objects.annotate(
        seats_used=Coalesce(Subquery(holders, output_field=IntegerField()), Value(0)),
        developer_count=Coalesce(Subquery(everyone, output_field=IntegerField()), Value(0)),
    ).annotate(over_seat_limit=ExpressionWrapper(Q(seats_used__gt=F("max_seats")), output_field=BooleanField()))


def developers_with_seat_rank(organization: Organization) -> list[Developer]:
    """An organization's developers in seat order, each with `seat_rank` (1-based) and `over_limit` set."""
    developers = list(Developer.objects.filter(organization=organization).order_by("seat_claimed_at", "id"))
    rank = 0
    for developer in developers:
        if developer.holds_seat:
            rank += 1
            developer.seat_rank = rank
            developer.over_limit = rank > organization.max_seats
        else:
            developer.seat_rank = None
            developer.over_limit = False
    return developers


# --- the key check -------------------------------------------------------------------------------------------------


def authenticate_key(raw_key: str) -> Principal:
    """The developer a key belongs to, or `KeyRefused` with a stable `.code` and a message a person can act on.

    Cold: one query (developer, organization and the developer's seat rank together), plus an update of
    `api_key_last_used_at` at most once a minute per developer. Warm: served from this process's memory for at
    most a second (see `accounts.key_cache`).
    """
    key = keys.normalize(raw_key)
    if key is None:
        raise _invalid_key()
    key_hash = keys.hash_key(key)
    checked = key_cache.get(key_hash)
    if checked is None:
        checked = _check_in_database(key_hash)
        if checked is None:
            raise _invalid_key()
        key_cache.put(key_hash, checked)
    return _outcome(checked)


def authenticate_key_from_memory(raw_key: str) -> Principal | None:
    """`authenticate_key` without the database: the answer this process remembers (a `Principal`, or `KeyRefused`
    for a malformed or remembered-refused key), or None when only the database can tell.

    Never blocks, so async code can call it on the event loop and go to a thread only for None.
    """
    key = keys.normalize(raw_key)
    if key is None:
        raise _invalid_key()
    checked = key_cache.get(keys.hash_key(key))
    return None if checked is None else _outcome(checked)


async def aauthenticate_key(raw_key: str) -> Principal:
    """`authenticate_key` for async callers: memory hits stay on the event loop, database work runs in a thread."""
    principal = authenticate_key_from_memory(raw_key)
    if principal is not None:
        return principal
    return await sync_to_async(_authenticate_key_on_worker, thread_sensitive=False)(raw_key)


def _authenticate_key_on_worker(raw_key: str) -> Principal:
    try:
        return authenticate_key(raw_key)
    finally:
        close_thread_connections()  # else each worker thread would keep a connection (a pool slot) for good


def _outcome(checked: _Checked) -> Principal:
    if checked.refusal is not None:
        raise KeyRefused(*checked.refusal)
    if checked.expires_at is not None and checked.expires_at <= timezone.now():
        raise _expired(checked.expires_at)
    assert checked.principal is not None
    return checked.principal


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
    seats_ahead: int


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
    "seats_ahead",
)
_HASH_PLACEHOLDER = "hotcross-key-hash-placeholder"


def _key_check_statement(connection: BaseDatabaseWrapper) -> tuple[str, list, int, SQLCompiler, dict]:
    """The key check's SQL, compiled by the ORM once per connection and then reused.

    Compiling this query costs several times more than PostgreSQL takes to run it, and the check is on every
    cold MCP request. The statement is still the ORM's (so it is right for every database backend) and rows go
    through the backend's own converters.
    """
    prepared = getattr(connection, "_hotcross_key_check", None)
    if prepared is None:
        query = (
            Developer.objects.annotate(seats_ahead=seats_ahead())
            .filter(api_key_hash=_HASH_PLACEHOLDER)
            .order_by()
            .values_list(*_KEY_CHECK_FIELDS)
            .query
        )
        compiler = query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        converters = compiler.get_converters([expression for expression, _, _ in compiler.select])
        prepared = (sql, list(params), list(params).index(_HASH_PLACEHOLDER), compiler, converters)
        connection._hotcross_key_check = prepared
    return prepared


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


def _check_in_database(key_hash: str) -> _Checked | None:
    """One query: the developer, its organization and how many seat holders took their seat before it."""
    connection = connections[DEFAULT_DB_ALIAS]
    sql, params, hash_index, compiler, converters = _key_check_statement(connection)
    params = params.copy()
    params[hash_index] = key_hash
    with _preparing_cursor(connection) as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    if converters:
        row = next(iter(compiler.apply_converters([row], converters)))
    found = _KeyRow(*row)
    refusal = _refusal(found)
    principal = None
    if refusal is None:
        principal = Principal(
            developer_id=found.developer_id,
            organization_id=found.organization_id,
            email=found.email,
            first_name=found.first_name,
            last_name=found.last_name,
            organization_name=found.organization_name,
            subscription_status=found.subscription_status,
            max_seats=found.max_seats,
        )
        _touch_last_used(found)
    return _Checked(
        principal=principal,
        refusal=None if refusal is None else (refusal.code, refusal.message),
        expires_at=found.expires_at,
    )


def _refusal(found: _KeyRow) -> KeyRefused | None:
    org_name = found.organization_name
    if found.revoked_at is not None:
        return KeyRefused(
            KeyRefused.KEY_REVOKED,
            f"This API key was revoked on {found.revoked_at:%Y-%m-%d %H:%M} UTC. "
            f"Ask an administrator of {org_name} for a new key.",
        )
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
    if found.seats_ahead >= found.max_seats:
        return KeyRefused(
            KeyRefused.SEAT_LIMIT_EXCEEDED,
            f"{org_name} has {found.max_seats} seat{'s' if found.max_seats != 1 else ''} and they are held by "
            "developers who joined earlier. Ask an administrator to add seats or free one.",
        )
    return None


def _touch_last_used(found: _KeyRow) -> None:
    now = timezone.now()
    if found.last_used_at is not None and now - found.last_used_at < LAST_USED_RESOLUTION:
        return
    connection = connections[DEFAULT_DB_ALIAS]
    with _preparing_cursor(connection) as cursor:
        cursor.execute(
            _touch_statement(connection),
            [
                connection.ops.adapt_datetimefield_value(now),
                Developer._meta.pk.get_db_prep_value(found.developer_id, connection),
                connection.ops.adapt_datetimefield_value(now - LAST_USED_RESOLUTION),
            ],
        )


def _touch_statement(connection: BaseDatabaseWrapper) -> str:
    """`UPDATE … SET api_key_last_used_at = now WHERE id = … AND (never used OR used over a minute ago)`.

    The condition makes concurrent checks (other threads, other workers) write at most once a minute too. Written out
    (from the model's names) rather than through `QuerySet.update`, whose compilation costs more than the write, so
    that it can stay prepared like the key check.
    """
    quote = connection.ops.quote_name
    table = quote(Developer._meta.db_table)
    last_used = quote(Developer._meta.get_field("api_key_last_used_at").column)
    pk = quote(Developer._meta.pk.column)
    return (
        f"UPDATE {table} SET {last_used} = %s "  # noqa: S608 (names from the model, values as parameters)
        f"WHERE {pk} = %s AND ({last_used} IS NULL OR {last_used} < %s)"
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


def _as_uuid(value: uuid.UUID | str, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise NotFound(f"'{value}' is not a valid {what} id (expected a UUID).") from None


# --- admin reads ---------------------------------------------------------------------------------------------------


def organizations_for_admin() -> QuerySet[Organization]:
    """`organizations_with_seats()` plus `last_activity`: the latest key use by any of its developers (one query)."""
    last_used = (
        Developer.objects.filter(organization=OuterRef("pk"))
        .order_by()
        .values("organization")
        .annotate(last=Max("api_key_last_used_at"))
        .values("last")
    )
    return organizations_with_seats().annotate(last_activity=Subquery(last_used))


def developers_with_seats_ahead() -> QuerySet[Developer]:
    """Developers annotated with `seats_ahead` (see `seats_ahead`)."""
    return Developer.objects.annotate(seats_ahead=seats_ahead())


def seats_ahead() -> Coalesce:
    """For a developer row: how many seat holders of its organization took their seat before it (the seat order).

    The rule of the key check and of the admin: a seat holder is over the limit when `seats_ahead >= max_seats`,
    so after a downgrade the earliest seat holders keep access.
    """
    ahead = (
        Developer.objects.seat_holders()
        .filter(organization=OuterRef("organization"))
        .filter(
            Q(seat_claimed_at__lt=OuterRef("seat_claimed_at"))
            | Q(seat_claimed_at=OuterRef("seat_claimed_at"), id__lt=OuterRef("id"))
        )
        .order_by()
        .values("organization")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(ahead, output_field=IntegerField()), Value(0))


def usage_per_developer_per_day(
    organization: Organization | uuid.UUID, *, days: int = 30, now: datetime.datetime | None = None
) -> tuple[datetime.date, list[dict]]:
    """An organization's recorded calls per developer per day over the last `days` days (today included).

    Returns the first day of the window and rows `{developer_id, email, day, calls, errors}` ordered by day (two
    queries: the counts from the (organization, created_at) index, then the emails). Days are in the current time
    zone.
    """
    org_id = organization.pk if isinstance(organization, Organization) else organization
    today = timezone.localdate(now or timezone.now())
    first_day = today - datetime.timedelta(days=days - 1)
    since = timezone.make_aware(datetime.datetime.combine(first_day, datetime.time.min))
    # Grouped without joining developers (a join makes PostgreSQL hash every developer); emails come separately.
    rows = list(
        UsageEvent.objects.filter(organization_id=org_id, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("developer_id", "day")
        .annotate(calls=Count("id"), errors=Count("id", filter=Q(ok=False)))
        .order_by("day", "developer_id")
    )
    emails = dict(Developer.objects.filter(pk__in={row["developer_id"] for row in rows}).values_list("id", "email"))
    return first_day, [{**row, "email": emails.get(row["developer_id"], "")} for row in rows]


# --- usage (MCP metering) -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthlyUsage:
    """A developer's recorded MCP tool calls in one calendar month, and their organization's total."""

    month: str  # "2025-11", in the project's time zone
    since: datetime.datetime
    until: datetime.datetime
    by_tool: dict[str, int]
    developer_total: int
    organization_total: int


def monthly_usage(
    *, developer_id: uuid.UUID, organization_id: uuid.UUID, now: datetime.datetime | None = None
) -> MonthlyUsage:
    """Calls recorded this calendar month (the month of `now`): the developer's by tool, and the organization's."""
    local = timezone.localtime(now or timezone.now())
    since = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    until = (since + datetime.timedelta(days=32)).replace(day=1)
    in_month = UsageEvent.objects.filter(created_at__gte=since, created_at__lt=until).order_by()
    by_tool = dict(
        in_month.filter(developer_id=developer_id)
        .values("tool_name")
        .annotate(n=Count("pk"))
        .order_by("tool_name")
        .values_list("tool_name", "n")
    )
    return MonthlyUsage(
        month=f"{since:%Y-%m}",
        since=since,
        until=until,
        by_tool=by_tool,
        developer_total=sum(by_tool.values()),
        organization_total=in_month.filter(organization_id=organization_id).count(),
    )


def organizations_over_seat_limit() -> QuerySet:
    """Ids of the organizations with more seat holders than seats, from one grouped pass over the seat holders.

    The same rule as `organizations_with_seats().over_seat_limit`, but cheaper for filtering every organization
    than a per-organization count.
    """
    # Grouped straight off the seat-holder index (no join before the grouping); each group's seats looked up by key.
    max_seats = Organization.objects.filter(pk=OuterRef("organization_id")).order_by().values("max_seats")
    return (
        Developer.objects.seat_holders()
        .order_by()
        .values("organization_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=Subquery(max_seats, output_field=IntegerField()))
        .values("organization_id")
    )
