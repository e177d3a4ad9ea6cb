"""Usage events reported by a server that runs elsewhere (`POST /api/v1/usage`), for the key's own developer.

The rules, all or nothing (a refused batch writes nothing):

- at most `MAX_EVENTS` events per batch;
- each event: a client event id (1–200 characters), a tool name, a time with a time zone, `ok` (true/false) and a
  duration in whole milliseconds; an event may name its developer and organization, which must be the key's own;
- no event older than the window (`HOTCROSS_API_USAGE_WINDOW_HOURS`) or more than `FUTURE_TOLERANCE` ahead;
- idempotent by client event id: an id this developer reported before (or twice in one batch) is a duplicate, not
  counted again.

Recorded events are written through `accounts.services.usage.record_usages`, the batch path metering uses, next to
the idempotency record (`api.ReportedEvent`), in one transaction under the developer's row lock (so two copies of a
batch sent at once cannot both count).
"""

from __future__ import annotations

import datetime
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.authentication import Principal
from accounts.exceptions import AccountsError
from accounts.models import Developer
from accounts.services.usage import record_usages

MAX_EVENTS = 1_000
MAX_ID_LENGTH = 200
FUTURE_TOLERANCE = datetime.timedelta(minutes=5)
_FIELDS = frozenset({"id", "tool", "at", "ok", "duration_ms", "developer_id", "organization_id"})


class UsageReportRefused(AccountsError):
    """A batch that is refused as a whole. `code`: `invalid_events`, `too_many_events`, `other_developer`,
    `event_too_old`, `event_in_future`; `errors`: the first problems found, each with the event's index."""

    code = "invalid_events"

    def __init__(self, message: str, *, code: str, errors: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message, code=code)
        self.errors = list(errors)


@dataclass(frozen=True)
class UsageReport:
    recorded: int
    duplicates: list[str]


@dataclass(frozen=True)
class _Event:
    client_id: str
    tool: str
    at: datetime.datetime
    ok: bool
    duration_ms: int


def usage_window() -> datetime.timedelta:
    return datetime.timedelta(hours=float(settings.HOTCROSS_API_USAGE_WINDOW_HOURS))


# Idempotency records are kept this long past the window. An event's time is at most `FUTURE_TOLERANCE` after the
# moment its record was written, so once a record is older than window + margin, a retry of its event is refused as
# too old anyway: the record can no longer prevent a double count.
PRUNE_MARGIN = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class PrunedRecords:
    deleted: int
    before: datetime.datetime


def prune_reported_events(*, now: datetime.datetime | None = None, batch_size: int = 10_000) -> PrunedRecords:
    """Delete the idempotency records (`api.ReportedEvent`) older than the usage window plus `PRUNE_MARGIN`, in
    batches of `batch_size` rows (short transactions beside a busy API)."""
    from api.models import ReportedEvent

    before = (now or timezone.now()) - usage_window() - max(PRUNE_MARGIN, FUTURE_TOLERANCE)
    deleted = 0
    while True:
        ids = list(ReportedEvent.objects.filter(received_at__lt=before).values_list("id", flat=True)[:batch_size])
        if not ids:
            return PrunedRecords(deleted=deleted, before=before)
        deleted += ReportedEvent.objects.filter(id__in=ids).delete()[0]


def record_reported_usage(*, principal: Principal, events: Any) -> UsageReport:
    """Record a reported batch for `principal`'s developer. Raises `UsageReportRefused` (nothing written)."""
    if not isinstance(events, list):
        raise UsageReportRefused("'events' must be a list of usage events.", code="invalid_events")
    if len(events) > MAX_EVENTS:
        raise UsageReportRefused(
            f"A batch holds at most {MAX_EVENTS} events, not {len(events)}: send them in several batches.",
            code="too_many_events",
        )
    parsed = _parse_all(principal, events)
    with transaction.atomic():
        Developer.objects.select_for_update().filter(pk=principal.developer_id).first()  # batches take turns
        return _record(principal, parsed)


def _parse_all(principal: Principal, events: list[Any]) -> list[_Event]:
    now = timezone.now()
    oldest, newest = now - usage_window(), now + FUTURE_TOLERANCE
    parsed: list[_Event] = []
    problems: dict[str, list[dict[str, Any]]] = {}
    for index, raw in enumerate(events):
        try:
            event = _parse(principal, raw)
        except UsageReportRefused as exc:
            problems.setdefault(exc.code, []).append({"index": index, "message": exc.message})
            continue
        if event.at < oldest:
            message = f"The event is older than the {_hours(usage_window())} window (HOTCROSS_API_USAGE_WINDOW_HOURS)."
            problems.setdefault("event_too_old", []).append({"index": index, "message": message})
        elif event.at > newest:
            message = "The event's time is in the future (more than 5 minutes ahead of the server's clock)."
            problems.setdefault("event_in_future", []).append({"index": index, "message": message})
        parsed.append(event)
    for code in ("other_developer", "invalid_events", "event_too_old", "event_in_future"):
        if code in problems:
            found = problems[code]
            raise UsageReportRefused(
                f"{len(found)} of the {len(events)} events cannot be recorded ({code}); nothing was recorded. "
                f"The first: event {found[0]['index']}: {found[0]['message']}",
                code=code,
                errors=[error for errors in problems.values() for error in errors][:20],
            )
    return parsed


def _parse(principal: Principal, raw: Any) -> _Event:
    def invalid(message: str) -> UsageReportRefused:
        return UsageReportRefused(message, code="invalid_events")

    if not isinstance(raw, dict):
        raise invalid("An event must be an object with id, tool, at, ok and duration_ms.")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise invalid(f"Unknown field {str(unknown[0])[:40]!r}; an event has {', '.join(sorted(_FIELDS))}.")
    for name, expected in (("developer_id", principal.developer_id), ("organization_id", principal.organization_id)):
        if name in raw and _as_uuid(raw[name]) != expected:
            raise UsageReportRefused(
                f"The event's {name} is not the key's own: a key reports only its own developer's usage.",
                code="other_developer",
            )
    client_id = raw.get("id")
    if not _text(client_id, MAX_ID_LENGTH):
        raise invalid(
            f"'id' must be the client's event id, a string of 1 to {MAX_ID_LENGTH} characters without control "
            "characters."
        )
    tool = raw.get("tool")
    if not _text(tool, 200):
        raise invalid("'tool' must be the tool's name, a string of 1 to 200 characters without control characters.")
    at = parse_datetime(raw["at"]) if isinstance(raw.get("at"), str) and len(raw["at"]) <= 64 else None
    if at is None or timezone.is_naive(at):
        raise invalid("'at' must be an ISO 8601 time with a time zone, like 2026-12-03T10:15:00Z.")
    ok = raw.get("ok")
    if not isinstance(ok, bool):
        raise invalid("'ok' must be true or false.")
    duration = raw.get("duration_ms")
    if isinstance(duration, bool) or not isinstance(duration, int) or not 0 <= duration < 2**31:
        raise invalid("'duration_ms' must be a whole number of milliseconds, 0 or more.")
    return _Event(client_id, tool.strip(), at, ok, duration)


def _record(principal: Principal, events: list[_Event]) -> UsageReport:
    from api.models import ReportedEvent  # the API app keeps the idempotency record

    ids = [event.client_id for event in events]
    known = set(
        ReportedEvent.objects.filter(developer_id=principal.developer_id, client_event_id__in=ids).values_list(
            "client_event_id", flat=True
        )
    )
    duplicates: list[str] = []
    fresh: list[_Event] = []
    for event in events:
        if event.client_id in known:
            duplicates.append(event.client_id)
        else:
            known.add(event.client_id)
            fresh.append(event)
    if fresh:
        ReportedEvent.objects.bulk_create(
            ReportedEvent(developer_id=principal.developer_id, client_event_id=event.client_id) for event in fresh
        )
        outcomes = record_usages(
            [
                {
                    "developer_id": principal.developer_id,
                    "organization_id": principal.organization_id,
                    "tool_name": event.tool,
                    "ok": event.ok,
                    "duration_ms": event.duration_ms,
                    "created_at": event.at,
                }
                for event in fresh
            ]
        )
        failed = next((outcome for outcome in outcomes if outcome is not None), None)
        if failed is not None:
            raise failed  # rolls the idempotency records back with it
    return UsageReport(recorded=len(fresh), duplicates=duplicates)


def _text(value: Any, longest: int) -> bool:
    """A non-blank string of at most `longest` characters with no control character (NUL cannot even be stored in
    a PostgreSQL text column) and no lone surrogate (not UTF-8)."""
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > longest:
        return False
    return not any(unicodedata.category(char) in ("Cc", "Cs") for char in value)


def _as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _hours(window: datetime.timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours:g} hour" + ("" if hours == 1 else "s")
