"""Usage events reported by a server that runs elsewhere (`POST /api/v1/usage`), for the key's own developer.

The rules, all or nothing (a refused batch writes nothing):

- at most `MAX_EVENTS` events per batch, and at most the plan's calls per minute (per developer and per
  organization, the smaller) when it has a rate limit: a batch that could never fit is refused at once;
- each event: a client event id (1–200 characters), a tool name, a time with a time zone, `ok` (true/false) and a
  duration in whole milliseconds; an event may name its developer and organization, which must be the key's own;
- no event older than the window (`HOTCROSS_API_USAGE_WINDOW_HOURS`) or more than `FUTURE_TOLERANCE` ahead;
- idempotent by client event id: an id this developer reported before (or twice in one batch) is a duplicate, not
  counted again, and costs nothing below.

Reported events are calls, and obey the organization's plan as calls on `/mcp` do, by the same rules
(`accounts.admission`): every event's tool must be one of the plan's tools (`tool_not_in_plan`); the new events take
one token each from the plan's rate-limit buckets, all or none (`rate_limited`, with the wait); a plan that refuses at
its monthly cap refuses a batch that would take the organization's calls of a month (the events' UTC month) beyond
the cap (`monthly_cap_reached`); a plan that goes on at the cap (overage) records them, and usage billing bills them as
it bills any call.

Recorded events are written through `accounts.services.usage.record_usages`, the batch path metering uses, next to
the idempotency record (`api.models.ReportedEvent`), in one transaction under the organization's row lock (so two
copies of a batch sent at once cannot both count, and two batches of one organization cannot both pass its cap).
`manage.py usage prune` prunes the idempotency records through `accounts.signals.usage_prune_requested`.
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

from accounts import admission
from accounts.admission import CallRefused
from accounts.credentials import Principal
from accounts.exceptions import AccountsError
from accounts.models import Organization
from accounts.plans import PlanTerms, terms_for
from accounts.services.usage import record_usages
from api.models import ReportedEvent

MAX_EVENTS = 1_000
MAX_ID_LENGTH = 200
FUTURE_TOLERANCE = datetime.timedelta(minutes=5)
_FIELDS = frozenset({"id", "tool", "at", "ok", "duration_ms", "developer_id", "organization_id"})


class UsageReportRefused(AccountsError):
    """A batch that is refused as a whole. `code`: `invalid_events`, `too_many_events`, `other_developer`,
    `event_too_old`, `event_in_future`, `tool_not_in_plan`, `rate_limited`, `monthly_cap_reached`; `errors`: the first
    problems found, each with the event's index; `details`: more for programs (`plan`, `retry_after`,
    `monthly_cap`…)."""

    code = "invalid_events"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        errors: Sequence[dict[str, Any]] = (),
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.errors = list(errors)
        self.details = dict(details or {})


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


def pruned_on_request(*, now: datetime.datetime | None = None, **_kwargs: Any) -> PrunedRecords:
    """The receiver of `accounts.signals.usage_prune_requested` (connected in `api.apps`)."""
    return prune_reported_events(now=now)


def prune_reported_events(*, now: datetime.datetime | None = None, batch_size: int = 10_000) -> PrunedRecords:
    """Delete the idempotency records (`ReportedEvent`) older than the usage window plus `PRUNE_MARGIN`, in
    batches of `batch_size` rows (short transactions beside a busy API)."""
    before = (now or timezone.now()) - usage_window() - max(PRUNE_MARGIN, FUTURE_TOLERANCE)
    deleted = 0
    while True:
        ids = list(ReportedEvent.objects.filter(received_at__lt=before).values_list("id", flat=True)[:batch_size])
        if not ids:
            return PrunedRecords(deleted=deleted, before=before)
        deleted += ReportedEvent.objects.filter(id__in=ids).delete()[0]


def record_reported_usage(*, principal: Principal, events: Any) -> UsageReport:
    """Record a reported batch for `principal`'s developer, under the organization's plan. Raises
    `UsageReportRefused` (nothing written)."""
    if not isinstance(events, list):
        raise UsageReportRefused("'events' must be a list of usage events.", code="invalid_events")
    plan = terms_for(principal.plan_id)
    most = max_batch(plan)
    if len(events) > most:
        why = "" if most == MAX_EVENTS else f" on the plan {plan.label} (its calls per minute)"
        raise UsageReportRefused(
            f"A batch holds at most {most} events{why}, not {len(events)}: send them in several batches.",
            code="too_many_events",
            details={"max_events": most},
        )
    parsed = _parse_all(principal, events)
    try:
        admission.require_tools(plan, [event.tool for event in parsed])
        with transaction.atomic():
            # Batches of one organization take turns: a retried batch cannot count twice, two cannot both pass the cap.
            Organization.objects.select_for_update().filter(pk=principal.organization_id).first()
            fresh, duplicates = _fresh(principal, parsed)
            if fresh:
                admission.admit_batch(principal, plan, [event.at for event in fresh])
                _record(principal, fresh)
    except CallRefused as refused:
        raise UsageReportRefused(
            refused.message, code=refused.code, errors=refused.events, details=refused.data
        ) from None
    return UsageReport(recorded=len(fresh), duplicates=duplicates)


def max_batch(plan: PlanTerms) -> int:
    """The most events one batch may hold on `plan`: `MAX_EVENTS`, or the plan's calls per minute when smaller (a
    batch takes that many rate-limit tokens at once; a bucket never holds more than its limit)."""
    limits_ = [limit for limit in (plan.rate_limit_per_developer, plan.rate_limit_per_organization) if limit]
    return min([MAX_EVENTS, *limits_])


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
        if name not in raw:
            continue
        if _as_uuid(raw[name]) is None:
            raise invalid(f"'{name}' must be an id (a UUID string), like the one /api/v1/keys/verify gives.")
        if _as_uuid(raw[name]) != expected:
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
    at = _time(raw.get("at"))
    ok = raw.get("ok")
    if not isinstance(ok, bool):
        raise invalid("'ok' must be true or false.")
    duration = raw.get("duration_ms")
    if isinstance(duration, bool) or not isinstance(duration, int) or not 0 <= duration < 2**31:
        raise invalid("'duration_ms' must be a whole number of milliseconds, 0 or more.")
    return _Event(client_id, tool.strip(), at, ok, duration)


def _fresh(principal: Principal, events: list[_Event]) -> tuple[list[_Event], list[str]]:
    """The events not reported before (nor earlier in the batch), and the ids of the others."""
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
    return fresh, duplicates


def _record(principal: Principal, fresh: list[_Event]) -> None:
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


def _time(value: Any) -> datetime.datetime:
    """`at` as an aware UTC datetime; `UsageReportRefused` naming the field for anything else: not a string, no time
    zone, or a time that does not exist (February 30th, month 13, hour 24, an offset of ±24 h or more, year 0)."""
    shape = "'at' must be an ISO 8601 time with a time zone, like 2026-12-03T10:15:00Z."
    if not isinstance(value, str) or not value or len(value) > 64 or not value.isprintable():
        raise UsageReportRefused(shape, code="invalid_events")
    try:
        at = parse_datetime(value)
        if at is None or timezone.is_naive(at):
            raise UsageReportRefused(shape, code="invalid_events")
        return at.astimezone(datetime.UTC)
    except (ValueError, OverflowError) as exc:
        raise UsageReportRefused(
            f"'at' is not a real time ({value[:40]!r}: {str(exc)[:60]}); {shape[7:]}", code="invalid_events"
        ) from None


def _text(value: Any, longest: int) -> bool:
    """A non-blank string of at most `longest` characters (as sent: an id is stored as it is) with no control
    character (NUL cannot even be stored in a PostgreSQL text column) and no lone surrogate (not UTF-8)."""
    if not isinstance(value, str) or not value.strip() or len(value) > longest:
        return False
    return not any(unicodedata.category(char) in ("Cc", "Cs") for char in value)


def _as_uuid(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _hours(window: datetime.timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours:g} hour" + ("" if hours == 1 else "s")
