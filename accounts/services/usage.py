"""Writes of usage events: one per served MCP tool call (metering and the admin usage chart), and their rollups.

Every batch of events is added to the rollups (`UsageRollup`, `accounts.rollups`) in the same transaction (PostgreSQL,
async: the same statement), so the rollups always equal the raw events.

No admin history: a tool call is not an administrative change, and there is one event per call.

`record_usages` (sync, the ORM) and `arecord_usages` (async) write a batch in one INSERT and answer the same way: one
entry per call, in order, None when recorded, else the `AccountsError` that kept it out (bad input, or a developer
deleted meanwhile). One call's error never loses the others' events. On PostgreSQL `arecord_usages` writes from the
event loop (`infra.db.aexecute`), without the hand-off to a thread that the ORM needs.

The spool: events a stopping server could not write (the database unreachable) are appended to a JSON-lines file
(`HOTCROSS_USAGE_SPOOL`) by `spill_usages`, and written to the database by `load_spooled_usages` (at the next start of
a server, or `manage.py usage_spool load`). A line holds only the event's columns: ids, tool name, outcome, duration
and time (no key, no arguments). Writers and loaders of one file take turns (an exclusive `flock`), so the workers of
one host can share it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import functools
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Required, TypedDict, Unpack

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts import last_used, partitions, rollups
from accounts.exceptions import AccountsError, InvalidInput, NotFound
from accounts.models import Developer, UsageEvent, UsageRollup
from infra.db import BOOKKEEPING, DatabaseUnavailable, aexecute, async_available, run_in_pool

logger = logging.getLogger(__name__)

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


# --- the spool: events that could not be written yet -----------------------------------------------------------------

_SPOOL_BATCH = 1_000  # events per INSERT when loading


@dataclasses.dataclass(frozen=True)
class SpoolContents:
    """What a spool file holds: the events it can give back, and how many of its lines are unreadable."""

    path: Path
    calls: list[UsageCall]
    unreadable: int


@dataclasses.dataclass(frozen=True)
class SpoolLoad:
    """What `load_spooled_usages` did: events written, dropped (their developer no longer exists, or invalid), and
    unreadable lines left in the file for a person to look at."""

    path: Path
    written: int
    dropped: int
    unreadable: int


def spool_path(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path if path is not None else settings.HOTCROSS_USAGE_SPOOL)


def spill_usages(calls: Sequence[UsageCall], path: str | os.PathLike[str] | None = None) -> Path:
    """Append `calls` to the spool file (created with its folder when missing), for `load_spooled_usages` to write
    later. Raises `OSError` when the file cannot be written (nothing appended then, or the whole batch)."""
    target = spool_path(path)
    lines = "".join(json.dumps(_spool_record(call), separators=(",", ":")) + "\n" for call in calls)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target, "a") as file:
        file.write(lines)
        file.flush()
        os.fsync(file.fileno())
    return target


def spooled_usages(path: str | os.PathLike[str] | None = None) -> SpoolContents:
    """The events waiting in the spool file (none when there is no file)."""
    target = spool_path(path)
    if not target.exists():
        return SpoolContents(target, [], 0)
    with _locked(target, "r") as file:
        calls, unreadable = _parse(file)
    return SpoolContents(target, calls, len(unreadable))


def load_spooled_usages(path: str | os.PathLike[str] | None = None) -> SpoolLoad:
    """Write the spooled events to the database (one INSERT per thousand) and empty the spool.

    Unreadable lines stay in the file. When the database cannot be reached, the events not yet written stay in the
    file and `OperationalError` is raised. Events whose developer no longer exists are dropped, as metering does.
    """
    target = spool_path(path)
    if not target.exists():
        return SpoolLoad(target, 0, 0, 0)
    with _locked(target, "r+") as file:
        calls, unreadable = _parse(file)
        written = dropped = 0
        try:
            for start in range(0, len(calls), _SPOOL_BATCH):
                batch = calls[start : start + _SPOOL_BATCH]
                outcomes = record_usages(batch)
                for call, outcome in zip(batch, outcomes, strict=True):
                    if outcome is None:
                        written += 1
                    else:
                        dropped += 1
                        logger.error("spooled usage event dropped developer=%s: %s", call.get("developer_id"), outcome)
        finally:
            # What is written leaves the file; what is not (an outage midway, unreadable lines) stays.
            rest = [json.dumps(_spool_record(call), separators=(",", ":")) for call in calls[written + dropped :]]
            file.seek(0)
            file.truncate()
            file.write("".join(line + "\n" for line in [*rest, *unreadable]))
            file.flush()
            os.fsync(file.fileno())
    if written or dropped:
        logger.warning("usage spool %s: %s events written, %s dropped", target, written, dropped)
    return SpoolLoad(target, written, dropped, len(unreadable))


@contextlib.contextmanager
def _locked(path: Path, mode: str) -> Iterator[IO[str]]:
    with open(path, mode, encoding="utf-8") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        try:
            yield file
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def _spool_record(call: UsageCall) -> dict[str, Any]:
    created_at = call.get("created_at") or timezone.now()
    return {
        "developer_id": str(call["developer_id"]),
        "organization_id": str(call["organization_id"]),
        "tool_name": call["tool_name"],
        "ok": bool(call["ok"]),
        "duration_ms": call["duration_ms"],
        "created_at": created_at.isoformat(),
    }


def _parse(file: IO[str]) -> tuple[list[UsageCall], list[str]]:
    """The spool's events, and its unreadable lines as they are."""
    calls: list[UsageCall] = []
    unreadable: list[str] = []
    for line in file:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            call: UsageCall = {
                "developer_id": uuid.UUID(record["developer_id"]),
                "organization_id": uuid.UUID(record["organization_id"]),
                "tool_name": record["tool_name"],
                "ok": record["ok"],
                "duration_ms": record["duration_ms"],
                "created_at": datetime.datetime.fromisoformat(record["created_at"]),
            }
            usage_values(**call)  # the writer's own validation: an invalid event is unreadable here, kept in the file
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, AccountsError):
            unreadable.append(line)
            continue
        calls.append(call)
    if unreadable:
        logger.warning("usage spool: %s unreadable lines kept", len(unreadable))
    return calls, unreadable


# --- api_key_last_used_at, written behind (see accounts.last_used) ----------------------------------------------------


def record_last_used(marks: Mapping[uuid.UUID, datetime.datetime]) -> int:
    """Set `api_key_last_used_at` of each developer to its time, where the column is empty or over a minute older
    (concurrent writers, other workers: at most once a minute each). How many rows changed."""
    ordered = sorted(marks.items(), key=lambda item: str(item[0]))  # one lock order for every writer
    if db_connection.vendor == "postgresql" and ordered:
        with db_connection.cursor() as cursor:  # one statement, as the metering flush makes it
            cursor.execute(
                _last_used_sql(),
                [[developer_id for developer_id, _ in ordered], [at for _, at in ordered]],
            )
            return cursor.rowcount
    changed = 0
    for developer_id, at in ordered:
        changed += (
            Developer.objects.filter(pk=developer_id)
            .filter(Q(api_key_last_used_at__isnull=True) | Q(api_key_last_used_at__lt=at - last_used.RESOLUTION))
            .update(api_key_last_used_at=at)
        )
    return changed


async def arecord_last_used(marks: Mapping[uuid.UUID, datetime.datetime]) -> None:
    """`record_last_used` for async callers: on PostgreSQL one UPDATE from the event loop. Raises
    `DatabaseUnavailable` when the database cannot be reached (nothing written)."""
    if not marks:
        return
    if not async_available():
        await run_in_pool(BOOKKEEPING, record_last_used, marks)
        return
    ordered = sorted(marks.items(), key=lambda item: str(item[0]))
    try:
        await aexecute(
            _last_used_sql(),
            [
                _array_literal(str(developer_id) for developer_id, _ in ordered),
                _array_literal(at.isoformat() for _, at in ordered),
            ],
        )
    except (OperationalError, InterfaceError) as exc:
        raise DatabaseUnavailable() from exc


@functools.cache
def _last_used_sql() -> str:
    quote = db_connection.ops.quote_name
    table = quote(Developer._meta.db_table)
    column = quote(Developer._meta.get_field("api_key_last_used_at").column)
    pk = quote(Developer._meta.pk.column)
    return (
        f"UPDATE {table} SET {column} = noted.at FROM unnest(%s::uuid[], %s::timestamptz[]) AS noted(id, at) "  # noqa: S608
        f"WHERE {table}.{pk} = noted.id "
        f"AND ({table}.{column} IS NULL OR {table}.{column} < noted.at - interval '1 minute')"
    )


# --- the rollups: rebuild and check -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RollupDifference:
    """One (organization, developer, tool, day) whose rollup does not equal its raw events: (calls, errors,
    duration in ms) by the events and by the rollup."""

    organization_id: uuid.UUID
    developer_id: uuid.UUID
    tool_name: str
    day: datetime.date
    events: tuple[int, int, int]
    rollup: tuple[int, int, int]


def raw_usage_kept_since() -> datetime.date:
    """The first day whose raw events are all still there: the retention drops older months (their rollups stay, and
    are neither checked nor rebuilt against raw events that are gone)."""
    cutoff = timezone.now() - datetime.timedelta(days=settings.HOTCROSS_USAGE_RAW_RETENTION_DAYS)
    return partitions.month_start(cutoff).date()


def rebuild_rollups(*, since: datetime.date, until: datetime.date | None = None) -> int:
    """Replace the rollups of the UTC days [since, until) (until: open) with the sums of the raw events of those days,
    in one transaction. Metering goes on meanwhile: on PostgreSQL writers wait for the rebuild at their rollup
    statement (their events are not yet visible to it), then add theirs. Returns the number of rollup rows after.

    Refuses a range that starts before `raw_usage_kept_since()`: it would replace kept rollups with nothing."""
    _check_range(since, until)
    _check_raw_kept(since)
    with transaction.atomic():
        if db_connection.vendor == "postgresql":
            with db_connection.cursor() as cursor:
                # Blocks writers' rollup upserts (ROW EXCLUSIVE) until this commits, and other rebuilds.
                table = db_connection.ops.quote_name(rollups.ROLLUPS)
                cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        in_range = UsageRollup.objects.filter(day__gte=since)
        if until is not None:
            in_range = in_range.filter(day__lt=until)
        in_range.delete()
        rollups.roll_up_events(db_connection, since=_midnight(since), until=_midnight(until) if until else None)
        return in_range.count()


def check_rollups(*, since: datetime.date, until: datetime.date | None = None) -> list[RollupDifference]:
    """The (organization, developer, tool, day) of [since, until) whose rollup differs from the raw events (none when
    they are equal): two grouped reads. Refuses a range that starts before `raw_usage_kept_since()`."""
    _check_range(since, until)
    _check_raw_kept(since)
    events = UsageEvent.objects.filter(created_at__gte=_midnight(since))
    in_range = UsageRollup.objects.filter(day__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=_midnight(until))
        in_range = in_range.filter(day__lt=until)
    key = ("organization_id", "developer_id", "tool_name", "day")
    by_events = {
        tuple(row[name] for name in key): (row["calls"], row["errors"], row["duration"])
        for row in events.annotate(day=TruncDate("created_at", tzinfo=datetime.UTC))
        .order_by()
        .values(*key)
        .annotate(calls=Count("pk"), errors=Count("pk", filter=Q(ok=False)), duration=Sum("duration_ms"))
    }
    by_rollups = {
        tuple(row[:4]): tuple(row[4:])
        for row in in_range.order_by().values_list(*key, "calls", "errors", "duration_ms")
        if any(row[4:])
    }
    return [
        RollupDifference(*group, events=by_events.get(group, (0, 0, 0)), rollup=by_rollups.get(group, (0, 0, 0)))
        for group in sorted(by_events.keys() | by_rollups.keys(), key=str)
        if by_events.get(group, (0, 0, 0)) != by_rollups.get(group, (0, 0, 0))
    ]


def _check_range(since: datetime.date, until: datetime.date | None) -> None:
    if not isinstance(since, datetime.date) or isinstance(since, datetime.datetime):
        raise InvalidInput(f"The first day must be a date, not {since!r}.")
    if until is not None and until <= since:
        raise InvalidInput(f"The end ({until}) must be after the first day ({since}).")


def _check_raw_kept(since: datetime.date) -> None:
    kept = raw_usage_kept_since()
    if since < kept:
        raise InvalidInput(
            f"Raw usage events before {kept} are no longer kept (HOTCROSS_USAGE_RAW_RETENTION_DAYS): their rollups "
            f"are all there is. Start at {kept} or later."
        )


def _midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)


# --- raw events: partitions ahead, retention --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pruned:
    """What `prune_raw_usage` did: events before `before` are gone (PostgreSQL: the partitions named; SQLite: rows)."""

    before: datetime.datetime
    partitions: list[str]
    rows: int | None  # SQLite: rows deleted; PostgreSQL: None (whole partitions)


def create_usage_partitions(*, ahead_months: int = partitions.AHEAD_MONTHS) -> list[str]:
    """PostgreSQL: create the raw events' month partitions from this month to `ahead_months` ahead (those missing).
    Returns the names created; none on SQLite (a plain table)."""
    if not 0 <= ahead_months <= 36:
        raise InvalidInput(f"Partitions can be made 0 to 36 months ahead, not {ahead_months}.")
    if not partitions.is_partitioned(db_connection):
        return []
    now = timezone.now()
    until = partitions.month_start(now)
    for _ in range(ahead_months):
        until = partitions.next_month(until)
    return partitions.create_partitions(db_connection, since=now, until=until)


def prune_raw_usage(*, retention_days: int | None = None, now: datetime.datetime | None = None) -> Pruned:
    """Drop the raw usage events older than the retention (`HOTCROSS_USAGE_RAW_RETENTION_DAYS`) by whole months: a
    month goes once all of it is older. The rollups stay (every figure people read comes from them)."""
    days = settings.HOTCROSS_USAGE_RAW_RETENTION_DAYS if retention_days is None else retention_days
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidInput(f"The retention must be a whole number of days, 1 or more, not {days!r}.")
    cutoff = (now or timezone.now()) - datetime.timedelta(days=days)
    before = partitions.month_start(cutoff)  # the months that ended by the cutoff
    if partitions.is_partitioned(db_connection):
        return Pruned(before, partitions.drop_partitions_before(db_connection, before), None)
    deleted, _ = UsageEvent.objects.filter(created_at__lt=before).delete()
    return Pruned(before, [], deleted)
