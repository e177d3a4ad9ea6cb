"""Helpers of the usage billing tests (tests/billing/test_meter_*.py): metered plans, organizations billed by usage,
calls placed in past hours, the reports' identifiers, a run of the reporter that never sleeps."""

from __future__ import annotations

import datetime
from typing import Any

from accounts.billing import usage
from accounts.choices import AtCap, MeteredBilling
from accounts.models import Plan, UsageBillingState
from tests.factories import OrganizationFactory, UsageEventFactory

HOUR = datetime.timedelta(hours=1)


def now_hour() -> datetime.datetime:
    """The start of the current UTC hour: tests place calls in the hours before it (Stripe takes 35 days back)."""
    return datetime.datetime.now(datetime.UTC).replace(minute=0, second=0, microsecond=0)


def make_plan(billing: str = MeteredBilling.ALL_CALLS, *, per_seat: int | None = None, **extra: Any) -> Plan:
    return Plan.objects.create(
        code=f"p-{billing}-{per_seat}-{Plan.objects.count()}",
        name=extra.pop("name", f"Plan {billing}"),
        monthly_calls_per_seat=per_seat,
        at_cap=AtCap.OVERAGE if billing == MeteredBilling.OVERAGE else AtCap.REFUSE,
        metered_billing=billing,
        stripe_meter_event_name=extra.pop("event_name", "hotcross_calls"),
        **extra,
    )


def billed_org(plan: Plan, since: datetime.datetime, **fields: Any) -> Any:
    """An organization on `plan`, billed by usage since `since` (as if a first run had seen it then)."""
    organization = OrganizationFactory(plan=plan, **fields)
    UsageBillingState.objects.create(organization=organization, billing_since=since, planned_until=since)
    return organization


def calls(developer: Any, at: datetime.datetime, n: int) -> None:
    for i in range(n):
        UsageEventFactory(developer=developer, created_at=at + datetime.timedelta(seconds=i))


def ident(organization: Any, start: datetime.datetime, sequence: int = 0) -> str:
    return usage.identifier(organization.pk, start, sequence)


def run(at: datetime.datetime) -> usage.RunResult:
    """One run of the reporter at `at`, its retries without waiting."""
    return usage.report_usage(at, sleep=lambda seconds: None)
