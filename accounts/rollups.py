"""The SQL of the usage rollups (`UsageRollup`): calls, errors and total duration per (organization, developer, tool,
UTC day), kept equal to the raw usage events.

Plain SQL on the tables' names, for three users: the writers of usage events (`accounts.services.usage`: the same
statement or transaction as the events), the migration that rolls up the events that existed before the rollups
(it must not import today's models), and `manage.py usage rebuild-rollups` (rebuild and check a range of days).
Every statement works on PostgreSQL and SQLite (`INSERT … ON CONFLICT DO UPDATE`, SQLite ≥ 3.24).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

EVENTS = "accounts_usageevent"
ROLLUPS = "accounts_usagerollup"
_KEY = ("organization_id", "day", "developer_id", "tool_name")  # the unique constraint `usage_rollup_unique`
_SUMS = ("calls", "errors", "duration_ms")
BACKFILL_BATCH = 200_000  # events per statement when rolling up existing events


def day_of(connection: BaseDatabaseWrapper, column: str) -> str:
    """SQL for the UTC day of a timestamp column (PostgreSQL `timestamptz`; SQLite stores UTC text)."""
    if connection.vendor == "postgresql":
        return f"(({column}) AT TIME ZONE 'UTC')::date"
    return f"date({column})"


def on_conflict(connection: BaseDatabaseWrapper) -> str:
    """The upsert's tail: add the new sums to a row that exists."""
    quote = connection.ops.quote_name
    table = quote(ROLLUPS)
    updates = ", ".join(f"{quote(name)} = {table}.{quote(name)} + excluded.{quote(name)}" for name in _SUMS)
    return f" ON CONFLICT ({', '.join(quote(name) for name in _KEY)}) DO UPDATE SET {updates}"


def columns(connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    return ", ".join(quote(name) for name in ("organization_id", "developer_id", "tool_name", "day", *_SUMS))


def from_events_sql(connection: BaseDatabaseWrapper, source: str, where: str = "") -> str:
    """`INSERT INTO rollups SELECT … FROM source [WHERE …] GROUP BY … ON CONFLICT …`: the rollups of the events in
    `source` (a table, or a CTE's name), added to the rollups there are. Rows in the order of the conflict target, so
    that two concurrent writers lock the rollups they share in the same order (no deadlock)."""
    day = day_of(connection, "created_at")
    return (
        f"INSERT INTO {connection.ops.quote_name(ROLLUPS)} ({columns(connection)}) "  # noqa: S608 (our names)
        f"SELECT organization_id, developer_id, tool_name, {day}, COUNT(*), "
        f"SUM(CASE WHEN ok THEN 0 ELSE 1 END), SUM(duration_ms) FROM {source} WHERE {where or '1 = 1'} "
        f"GROUP BY organization_id, {day}, developer_id, tool_name "
        f"ORDER BY organization_id, {day}, developer_id, tool_name" + on_conflict(connection)
    )


def summed(events: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rollup rows of some events (dicts with the event's columns), in the conflict target's order:
    `(organization_id, developer_id, tool_name, day, calls, errors, duration_ms)`."""
    sums: dict[tuple[Any, ...], list[int]] = {}
    for event in events:
        day = event["created_at"].astimezone(datetime.UTC).date()
        key = (event["organization_id"], day, event["developer_id"], event["tool_name"])
        row = sums.setdefault(key, [0, 0, 0])
        row[0] += 1
        row[1] += 0 if event["ok"] else 1
        row[2] += event["duration_ms"]
    return [
        (organization_id, developer_id, tool_name, day, *row)
        for (organization_id, day, developer_id, tool_name), row in sorted(sums.items(), key=lambda item: str(item[0]))
    ]


def add_rows(connection: BaseDatabaseWrapper, rows: list[tuple[Any, ...]]) -> None:
    """Add rollup rows (from `summed`) with one `INSERT … VALUES … ON CONFLICT DO UPDATE` (call it inside the
    transaction that writes their events)."""
    if not rows:
        return
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for organization_id, developer_id, tool_name, day, calls, errors, duration in rows:
        params += [
            _uuid(connection, organization_id),
            _uuid(connection, developer_id),
            tool_name,
            connection.ops.adapt_datefield_value(day),
            calls,
            errors,
            duration,
        ]
    sql = f"INSERT INTO {connection.ops.quote_name(ROLLUPS)} ({columns(connection)}) VALUES {placeholders}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql + on_conflict(connection), params)


def _uuid(connection: BaseDatabaseWrapper, value: Any) -> Any:
    if connection.vendor == "postgresql":
        return value
    return value.hex if hasattr(value, "hex") else str(value).replace("-", "")


def roll_up_events(
    connection: BaseDatabaseWrapper,
    *,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    batch: int = BACKFILL_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Add the rollups of the raw events created in [since, until) (all when None), `batch` event ids at a time;
    `progress(done, total)` after each batch (ids, not events: gaps count too). Returns the number of batches."""
    quote = connection.ops.quote_name
    conditions, params = _time_range(connection, since, until)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT MIN(id), MAX(id) FROM {quote(EVENTS)} WHERE {' AND '.join(conditions) or '1 = 1'}",  # noqa: S608
            params,
        )
        low, high = cursor.fetchone()
    if low is None:
        return 0
    total = high - low + 1
    batches = 0
    for start in range(low, high + 1, batch):
        where = " AND ".join([*conditions, "id >= %s", "id < %s"])
        with connection.cursor() as cursor:
            cursor.execute(from_events_sql(connection, quote(EVENTS), where), [*params, start, start + batch])
        batches += 1
        if progress is not None:
            progress(min(start + batch, high + 1) - low, total)
    return batches


def _time_range(
    connection: BaseDatabaseWrapper, since: datetime.datetime | None, until: datetime.datetime | None
) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if since is not None:
        conditions.append("created_at >= %s")
        params.append(connection.ops.adapt_datetimefield_value(since))
    if until is not None:
        conditions.append("created_at < %s")
        params.append(connection.ops.adapt_datetimefield_value(until))
    return conditions, params
