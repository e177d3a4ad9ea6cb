"""Writes of usage events: one per served MCP tool call (metering and the admin usage chart), and their rollups.

Every batch of events is added to the rollups (`UsageRollup`, `accounts.rollups`) in the same transaction (PostgreSQL,
async: the same statement), so the rollups always equal the raw events.

No admin history: a tool call is not an administrative change, and there is one event per call.

`record_usages` (sync, the ORM) and `arecord_usages` (async) write a batch in one INSERT and answer the same way: one
entry per call, in order, None when recorded, else the `AccountsError` that kept it out (bad input, or a developer
deleted meanwhile). One call's error never loses the others' events. On PostgreSQL `arecord_usages` writes from the
event loop (`infra.db.aexecute`), without the hand-off to a thread that the ORM needs.

After a batch is written, `accounts.alerts` may check the monthly caps of its organizations (the owners' 80 % and 100 %
mails): a per-process gate lets each organization through at most once per `HOTCROSS_ALERT_CHECK_SECONDS`, and the
check runs beside the write (async: a task on the bookkeeping threads), never failing it.

Beside it: `accounts.services.usage_spool` (the events a stopping server could not write) and
`accounts.services.usage_upkeep` (rebuilding and checking the rollups, partitions ahead, retention of raw events).
"""

from __future__ import annotations

import datetime
import functools
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Required, TypedDict, Unpack

from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.utils import timezone

from accounts import alerts, rollups
from accounts.exceptions import AccountsError, InvalidInput, NotFound
from accounts.models import UsageEvent
from infra.db import BOOKKEEPING, DatabaseUnavailable, aexecute, async_available, run_in_pool

Outcome = AccountsError | None

_MAX_DURATION_MS = 2**31 - 1  # PositiveIntegerField's ceiling on every database
_TOOL_NAME_MAX = UsageEvent._meta.get_field("tool_name").max_length
_COLUMNS = ("developer_id", "organization_id", "tool_name", "ok", "duration_ms", "created_at")


class UsageCall(TypedDict, total=False):
    """One served call, as the writers take it: `developer_id`, `organization_id`, `tool_name`, `ok` and
    `duration_ms` are required; `created_at` (aware) defaults to now."""

    developer_id: Required[uuid.UUID]
    organization_id: Required[uuid.UUID]
    tool_name: Required[str]
    ok: Required[bool]
    duration_ms: Required[int]
    created_at: datetime.datetime | None


def record_usage(**call: Unpack[UsageCall]) -> UsageEvent:
    """Record one served call. Raises `InvalidInput` or `NotFound` (nothing written)."""
    event = UsageEvent(**usage_values(**call))
    error = _saved_or_error(event)
    if error is not None:
        raise error
    return event


def record_usages(calls: Sequence[UsageCall]) -> list[Outcome]:
    """Record several served calls (each a dict of `record_usage`'s arguments) in one INSERT."""
    outcomes, valid = _validated(calls)
    if not valid:
        return outcomes
    events = [UsageEvent(**values) for _, values in valid]
    try:
        with transaction.atomic():
            UsageEvent.objects.bulk_create(events)
            rollups.add_rows(db_connection, rollups.summed(values for _, values in valid))
    except IntegrityError:
        # One of them names a developer or organization that no longer exists: record them one by one.
        for (index, _), event in zip(valid, events, strict=True):
            event.pk = None
            outcomes[index] = _saved_or_error(event)
    alerts.after_usage(values["organization_id"] for _, values in valid)
    return outcomes


async def arecord_usages(calls: Sequence[UsageCall]) -> list[Outcome]:
    """`record_usages` for async callers. When the database cannot be reached it raises
    `infra.db.DatabaseUnavailable`, having written nothing."""
    if not async_available():
        return await run_in_pool(BOOKKEEPING, record_usages, calls)
    outcomes, valid = _validated(calls)
    if not valid:
        return outcomes
    rows = [(index, tuple(values[column] for column in _COLUMNS)) for index, values in valid]
    try:
        await aexecute(*_insert([row for _, row in rows]))
    except (OperationalError, InterfaceError) as exc:
        raise DatabaseUnavailable() from exc
    except IntegrityError:
        # One of them names a developer or organization that no longer exists: write them one by one.
        for index, row in rows:
            try:
                await aexecute(*_insert([row]))
            except (OperationalError, InterfaceError) as exc:
                raise DatabaseUnavailable() from exc
            except IntegrityError:
                outcomes[index] = _not_found(row[0], row[1])
    await alerts.aafter_usage(values["organization_id"] for _, values in valid)
    return outcomes


def usage_values(
    *,
    developer_id: uuid.UUID,
    organization_id: uuid.UUID,
    tool_name: str,
    ok: bool,
    duration_ms: int,
    created_at: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A usage event's column values, validated and normalised. Raises `InvalidInput`."""
    name = tool_name.strip() if isinstance(tool_name, str) else ""
    if not name or len(name) > _TOOL_NAME_MAX:
        raise InvalidInput(
            f"A usage event needs a tool name of 1 to {_TOOL_NAME_MAX} characters, not {tool_name!r:.80}."
        )
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms < 0:
        raise InvalidInput(f"A call's duration must be a whole number of milliseconds, 0 or more, not {duration_ms!r}.")
    if created_at is not None and timezone.is_naive(created_at):
        raise InvalidInput("The time of a usage event needs a time zone.")
    return {
        "developer_id": developer_id,
        "organization_id": organization_id,
        "tool_name": name,
        "ok": bool(ok),
        "duration_ms": min(duration_ms, _MAX_DURATION_MS),
        "created_at": created_at or timezone.now(),
    }


def _validated(calls: Sequence[UsageCall]) -> tuple[list[Outcome], list[tuple[int, dict[str, Any]]]]:
    """The outcome list with the refusals filled in, and the valid calls' values with their index."""
    outcomes: list[Outcome] = []
    valid: list[tuple[int, dict[str, Any]]] = []
    for index, call in enumerate(calls):
        try:
            valid.append((index, usage_values(**call)))
        except AccountsError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    return outcomes, valid


def _saved_or_error(event: UsageEvent) -> NotFound | None:
    try:
        with transaction.atomic():
            event.save(force_insert=True)
            rollups.add_rows(db_connection, rollups.summed([{c: getattr(event, c) for c in _COLUMNS}]))
    except IntegrityError:
        # The foreign keys are checked when the row commits: the developer or organization was deleted meanwhile, or
        # the ids name nothing.
        return _not_found(event.developer_id, event.organization_id)
    return None


def _not_found(developer_id: uuid.UUID, organization_id: uuid.UUID) -> NotFound:
    return NotFound(f"Cannot record usage: developer {developer_id} of organization {organization_id} does not exist.")


# --- the PostgreSQL batch INSERT --------------------------------------------------------------------------------------


def _insert(rows: Sequence[tuple[Any, ...]]) -> tuple[str, list[str]]:
    """One INSERT of `rows` (values in `_COLUMNS` order) on PostgreSQL: one array literal per column, unnested.

    The statement is the same whatever the number of rows, so psycopg parses it once and the server prepares it once.
    The arrays are written here as PostgreSQL array literals rather than adapted value by value by the driver (its
    list adaptation is pure Python, and it was most of what metering cost the MCP server's event loop).
    """
    developer_ids, organization_ids, tool_names, oks, durations, times = zip(*rows, strict=True)
    return _insert_sql(), [
        _array_literal(map(str, developer_ids)),
        _array_literal(map(str, organization_ids)),
        _array_literal(tool_names, quote=True),
        _array_literal("t" if ok else "f" for ok in oks),
        _array_literal(map(str, durations)),
        _array_literal(time.isoformat() for time in times),
    ]


def _array_literal(elements: Iterable[str], *, quote: bool = False) -> str:
    """A PostgreSQL array literal. `quote` for free text: each element double-quoted, `\\` and `"` escaped, so commas,
    braces and spaces are data. Unquoted elements must not contain those (UUIDs, numbers, ISO times do not)."""
    if quote:
        elements = ('"' + element.replace("\\", "\\\\").replace('"', '\\"') + '"' for element in elements)
    return "{" + ",".join(elements) + "}"


@functools.cache
def _insert_sql() -> str:
    # Once per process: in async code each task would make itself a database connection object to quote the names.
    quote = db_connection.ops.quote_name
    fields = [UsageEvent._meta.get_field(name) for name in _COLUMNS]
    columns = ", ".join(quote(field.column) for field in fields)
    arrays = ", ".join(f"%s::{field.db_type(db_connection)}[]" for field in fields)  # e.g. %s::uuid[]
    table = quote(UsageEvent._meta.db_table)
    # One statement writes the events and adds them to the rollups: both or neither (a foreign key that names nothing
    # fails the statement at its end), and one round trip.
    returning = ", ".join(quote(name) for name in _COLUMNS)
    return (
        f"WITH added AS (INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) "  # noqa: S608 (our names)
        f"RETURNING {returning}) " + rollups.from_events_sql(db_connection, "added")
    )
