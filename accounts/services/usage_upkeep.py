"""The upkeep of usage data: rebuilding and checking the rollups against the raw events
(`manage.py usage rebuild-rollups`), creating the raw events' month partitions ahead, and dropping raw events older
than the retention (their rollups stay). The events and rollups themselves are written by `accounts.services.usage`.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts import partitions, rollups
from accounts.exceptions import InvalidInput
from accounts.models import UsageEvent, UsageRollup

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
