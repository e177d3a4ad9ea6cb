"""Usage billing: an organization's billable calls reported to Stripe as meter events, once per reporting interval.

Who is billed: organizations whose plan in effect `bills_usage` (`accounts.plans`) and that have a Stripe customer.
What: `all_calls` bills every call (usage event) of the interval; `overage` only the calls beyond the monthly cap
(`plans.monthly_cap(plan, max_seats)`) within the calendar month (UTC), split at the interval where the cap is crossed.

How (`report_usage`, run by `manage.py billing report-usage`), in two phases:

1. Plan (short transactions, one per organization, never calling Stripe): for every settled interval (over for
   `HOTCROSS_METER_SETTLE_SECONDS`) since the organization's `planned_until`, and again for those still within
   `HOTCROSS_METER_LATE_HOURS` (calls reported late through the API or the spool), work out what the interval should
   have billed and write a `MeterReport` for the difference with what is already recorded (sent or pending). The
   first report of an interval is `sequence` 0; late calls make `sequence` 1, 2…. A report is written (pending)
   before it is sent, with a deterministic identifier, so it is never worked out twice.
2. Send (no lock held): every pending report, oldest first, with its own identifier; retried with backoff on network
   errors, 429 and 5xx. Stripe's "already exists with identifier" answer means an earlier attempt was accepted (the
   process stopped between sending and recording): the report is marked accepted. Refusals (a bad customer or meter)
   are recorded and tried again next run; nothing after them is skipped.

An interval is thus reported once (plus corrections for late calls), never twice (the identifier), and never skipped
(`planned_until` moves only after the reports of the intervals before it are written).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from accounts import plans
from accounts.billing import meter_events
from accounts.choices import MeteredBilling
from accounts.models import (
    MeterReport,
    MeterReportState,
    Organization,
    Plan,
    UsageBillingState,
    UsageEvent,
    UsageRollup,
)

logger = logging.getLogger(__name__)

BILLED_BY_USAGE = [MeteredBilling.ALL_CALLS, MeteredBilling.OVERAGE]


# --- intervals --------------------------------------------------------------------------------------------------------


def interval_length() -> datetime.timedelta:
    return datetime.timedelta(minutes=int(settings.HOTCROSS_METER_INTERVAL_MINUTES))


def interval_start(moment: datetime.datetime) -> datetime.datetime:
    """The start (UTC) of the reporting interval that `moment` falls in (intervals divide UTC days)."""
    moment = moment.astimezone(datetime.UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    length = interval_length()
    return midnight + ((moment - midnight) // length) * length


def settled_until(now: datetime.datetime) -> datetime.datetime:
    """The end of the last interval that is over and settled (calls of the metering's last flush written)."""
    return interval_start(now - datetime.timedelta(seconds=int(settings.HOTCROSS_METER_SETTLE_SECONDS)))


def late_window() -> datetime.timedelta:
    return datetime.timedelta(hours=float(settings.HOTCROSS_METER_LATE_HOURS))


def identifier(organization_id: object, start: datetime.datetime, sequence: int) -> str:
    """Deterministic: organization + interval (+ the correction's number). Stripe takes up to 100 characters."""
    hex_id = getattr(organization_id, "hex", str(organization_id).replace("-", ""))
    name = f"hotcross-{hex_id}-{start.astimezone(datetime.UTC):%Y%m%dT%H%MZ}"
    return name if sequence == 0 else f"{name}-late{sequence}"


def event_timestamp(start: datetime.datetime, end: datetime.datetime) -> datetime.datetime:
    """The meter event's time: the last second of its interval, so Stripe counts it in the billing period of the
    calls (an interval lies within one period unless a period starts mid-interval)."""
    return end - datetime.timedelta(seconds=1)


# --- what an interval bills -------------------------------------------------------------------------------------------


def billable_organizations() -> list[tuple[Organization, Plan]]:
    """Organizations with a Stripe customer whose plan in effect bills usage, with that plan (one query, or two with
    a default plan; the rule itself is `plans.bills_usage`, checked again on each)."""
    default = Plan.objects.filter(code=plans.default_plan_code()).first() if plans.default_plan_code() else None
    metered = Q(plan__metered_billing__in=BILLED_BY_USAGE) & ~Q(plan__stripe_meter_event_name="")
    if plans.bills_usage(default):
        metered |= Q(plan__isnull=True)
    found = []
    for organization in (
        Organization.objects.filter(metered)
        .exclude(Q(stripe_customer_id__isnull=True) | Q(stripe_customer_id=""))
        .select_related("plan")
        .order_by("id")
    ):
        plan = organization.plan if organization.plan_id is not None else default
        if plans.bills_usage(plan):
            found.append((organization, plan))
    return found


def billed_per_interval(
    organization: Organization, plan: Plan, since: datetime.datetime, until: datetime.datetime
) -> dict[datetime.datetime, int]:
    """What each interval in [since, until) should bill in all (interval start → value). Two queries: the month's calls
    before `since`'s day from the daily rollups, and the calls from that day on from the raw events, by hour."""
    day_start = since.replace(hour=0, minute=0, second=0, microsecond=0)
    month = plans.month_start(day_start)
    before = (
        UsageRollup.objects.filter(organization=organization, day__gte=month.date(), day__lt=day_start.date())
        .aggregate(n=Sum("calls"))
        .get("n")
        or 0
    )
    hourly = (
        UsageEvent.objects.filter(organization=organization, created_at__gte=day_start, created_at__lt=until)
        .annotate(hour=TruncHour("created_at", tzinfo=datetime.UTC))
        .values("hour")
        .annotate(n=Count("id"))
        .values_list("hour", "n")
    )
    calls: dict[datetime.datetime, int] = {}
    for hour, n in hourly:
        start = interval_start(hour)
        calls[start] = calls.get(start, 0) + n
    cap = plans.monthly_cap(plan, organization.max_seats)
    billed: dict[datetime.datetime, int] = {}
    used = before  # calls of the month before the interval
    start, length = day_start, interval_length()
    while start < until:
        if start == plans.month_start(start):
            used = 0
        n = calls.get(start, 0)
        if plan.metered_billing == MeteredBilling.ALL_CALLS:
            value = n
        elif cap is None:
            value = 0  # overage without a cap: nothing is beyond it
        else:
            value = max(0, used + n - cap) - max(0, used - cap)
        used += n
        if start >= since:
            billed[start] = value
        start += length
    return billed


# --- phase 1: plan ----------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    organizations: int = 0
    planned: int = 0  # reports written this run
    accepted: int = 0
    duplicates: int = 0  # accepted earlier (Stripe knew the identifier)
    failed: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def pending_left(self) -> int:
        return MeterReport.objects.filter(state=MeterReportState.PENDING).count()


def plan_reports(now: datetime.datetime | None = None) -> RunResult:
    """Phase 1: write the pending reports of every billable organization's settled intervals."""
    now = now or timezone.now()
    result = RunResult()
    billable = billable_organizations()
    billable_ids = [organization.pk for organization, _ in billable]
    # Organizations no longer billed: when billed again, they start afresh from that moment.
    UsageBillingState.objects.exclude(organization_id__in=billable_ids).filter(billing_since__isnull=False).update(
        billing_since=None, planned_until=None
    )
    for organization, plan in billable:
        result.organizations += 1
        try:
            result.planned += _plan_organization(organization, plan, now)
        except IntegrityError:
            # Another run wrote the same report at the same moment (SQLite has no row locks): it stands; this run
            # leaves the organization to it.
            logger.info("Usage billing of %s planned by another run meanwhile.", organization.pk)
    return result


def _plan_organization(organization: Organization, plan: Plan, now: datetime.datetime) -> int:
    until = settled_until(now)
    with transaction.atomic():
        state, _ = UsageBillingState.objects.get_or_create(organization=organization)
        state = UsageBillingState.objects.select_for_update().get(pk=state.pk)
        state.last_run_at = now
        if state.billing_since is None:
            # First seen billable: usage is billed from the start of the current interval.
            state.billing_since = state.planned_until = interval_start(now)
            state.save()
            return 0
        since = max(state.billing_since, min(state.planned_until or until, interval_start(until - late_window())))
        written = 0
        if since < until:
            written = _write_differences(organization, plan, since, until)
            state.planned_until = max(state.planned_until or until, until)
        state.save()
        return written


def _write_differences(
    organization: Organization, plan: Plan, since: datetime.datetime, until: datetime.datetime
) -> int:
    billed = billed_per_interval(organization, plan, since, until)
    recorded = {
        row["interval_start"]: row
        for row in MeterReport.objects.filter(
            organization=organization, interval_start__gte=since, interval_start__lt=until
        )
        .values("interval_start")
        .annotate(total=Sum("value"), last=Max("sequence"))
    }
    written = 0
    length = interval_length()
    for start, value in sorted(billed.items()):
        previous = recorded.get(start)
        missing = value - (previous["total"] if previous else 0)
        if missing <= 0:
            continue  # negative only when the cap grew after reporting: what was billed stays billed
        sequence = previous["last"] + 1 if previous else 0
        MeterReport.objects.create(
            organization=organization,
            interval_start=start,
            interval_end=start + length,
            sequence=sequence,
            identifier=identifier(organization.pk, start, sequence),
            event_name=plan.stripe_meter_event_name,
            stripe_customer_id=organization.stripe_customer_id,
            value=missing,
            timestamp=event_timestamp(start, start + length),
        )
        written += 1
    return written


# --- phase 2: send ----------------------------------------------------------------------------------------------------


def send_pending(
    now: datetime.datetime | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    reports: Iterable[MeterReport] | None = None,
) -> RunResult:
    """Phase 2: send every pending report (oldest first), each with retries; record each outcome as it comes."""
    result = RunResult()
    pending = (
        reports
        if reports is not None
        else MeterReport.objects.filter(state=MeterReportState.PENDING).order_by("interval_start", "sequence", "id")
    )
    for report in pending:
        current = timezone.now() if now is None else now
        if not meter_events.within_stripe_window(report.timestamp, current):
            _record_expired(report, current)
            result.expired += 1
            continue
        try:
            sent = _send_with_retries(report, sleep)
        except meter_events.MeterEventError as exc:
            _record_failure(report, exc, current)
            result.failed += 1
            result.errors.append(f"{report.identifier}: {exc.message}")
            continue
        MeterReport.objects.filter(pk=report.pk, state=MeterReportState.PENDING).update(
            state=MeterReportState.ACCEPTED, attempts=F("attempts") + 1, reported_at=timezone.now(), last_error=""
        )
        if sent is meter_events.Sent.DUPLICATE:
            result.duplicates += 1
        else:
            result.accepted += 1
    return result


def _send_with_retries(report: MeterReport, sleep: Callable[[float], None]) -> meter_events.Sent:
    """Send; each failed attempt is counted on the report as it happens (the successful one by the caller)."""
    tries = max(1, int(settings.HOTCROSS_METER_TRIES))
    wait = float(settings.HOTCROSS_METER_BACKOFF_SECONDS)
    event = meter_events.MeterEventRequest(
        event_name=report.event_name,
        stripe_customer_id=report.stripe_customer_id,
        value=report.value,
        identifier=report.identifier,
        timestamp=report.timestamp,
    )
    for attempt in range(1, tries + 1):
        try:
            return meter_events.send_meter_event(event)
        except meter_events.MeterEventError as exc:
            MeterReport.objects.filter(pk=report.pk).update(attempts=F("attempts") + 1, last_error=exc.message)
            if not exc.retryable or attempt == tries:
                raise
            logger.warning("Meter event %s: %s; retrying in %.1f s.", report.identifier, exc.message, wait)
            sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


def _record_failure(report: MeterReport, exc: meter_events.MeterEventError, now: datetime.datetime) -> None:
    logger.warning("Meter event %s not accepted: %s", report.identifier, exc.message)
    UsageBillingState.objects.filter(organization_id=report.organization_id).update(
        last_error=f"{report.identifier}: {exc.message}", last_error_at=now
    )


def _record_expired(report: MeterReport, now: datetime.datetime) -> None:
    message = "Too old for Stripe (meter events must be within the past 35 days): not sent."
    MeterReport.objects.filter(pk=report.pk, state=MeterReportState.PENDING).update(
        state=MeterReportState.EXPIRED, last_error=message
    )
    UsageBillingState.objects.filter(organization_id=report.organization_id).update(
        last_error=f"{report.identifier}: {message}", last_error_at=now
    )


# --- the run ----------------------------------------------------------------------------------------------------------


def report_usage(now: datetime.datetime | None = None, *, sleep: Callable[[float], None] = time.sleep) -> RunResult:
    """One run of `manage.py billing report-usage`: plan the settled intervals' reports, then send what is pending
    (this run's and any left by an earlier run that stopped or failed)."""
    planned = plan_reports(now)
    sent = send_pending(now, sleep=sleep)
    sent.organizations, sent.planned = planned.organizations, planned.planned
    return sent


# --- what staff see ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageBillingStatus:
    organization: Organization
    plan: Plan | None
    billed: bool  # the plan bills usage and there is a Stripe customer
    billing_since: datetime.datetime | None
    planned_until: datetime.datetime | None
    reported_until: datetime.datetime | None  # every interval before this is accepted by Stripe
    period_start: datetime.datetime
    period_reported: int  # accepted this calendar month
    pending_reports: int
    pending_value: int
    last_error: str
    last_error_at: datetime.datetime | None
    last_run_at: datetime.datetime | None
    unreported_estimate: int  # what the intervals not yet worked out would bill now (this month, to now)


def usage_billing_status(organization: Organization, now: datetime.datetime | None = None) -> UsageBillingStatus:
    """The organization's metered usage this calendar month, reported up to when, pending, the last error."""
    now = now or timezone.now()
    plan = plans.effective_plan(organization)
    billed = plans.bills_usage(plan) and bool(organization.stripe_customer_id)
    state = UsageBillingState.objects.filter(organization=organization).first()
    month = plans.month_start(now)
    reports = MeterReport.objects.filter(organization=organization)
    accepted = reports.filter(state=MeterReportState.ACCEPTED, interval_start__gte=month).aggregate(n=Sum("value"))
    pending = reports.filter(state=MeterReportState.PENDING).aggregate(n=Count("id"), v=Sum("value"))
    first_pending = (
        reports.filter(state=MeterReportState.PENDING)
        .order_by("interval_start")
        .values_list("interval_start", flat=True)
        .first()
    )
    planned_until = state.planned_until if state else None
    reported_until = planned_until
    if first_pending is not None and (reported_until is None or first_pending < reported_until):
        reported_until = first_pending
    unreported = 0
    if billed and plan is not None and state is not None and state.billing_since is not None:
        since = max(state.planned_until or state.billing_since, month)
        end = interval_start(now) + interval_length()
        if since < end:
            unreported = sum(billed_per_interval(organization, plan, since, end).values())
    return UsageBillingStatus(
        organization=organization,
        plan=plan,
        billed=billed,
        billing_since=state.billing_since if state else None,
        planned_until=planned_until,
        reported_until=reported_until,
        period_start=month,
        period_reported=accepted["n"] or 0,
        pending_reports=pending["n"] or 0,
        pending_value=pending["v"] or 0,
        last_error=state.last_error if state else "",
        last_error_at=state.last_error_at if state else None,
        last_run_at=state.last_run_at if state else None,
        unreported_estimate=unreported,
    )


def organizations_billed_by_usage() -> list[UsageBillingStatus]:
    """`usage_billing_status` of every organization billed by usage (for `manage.py billing status`)."""
    return [usage_billing_status(organization) for organization, _ in billable_organizations()]
