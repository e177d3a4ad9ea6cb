"""What a plan means, as pure functions shared by the key check, the bridge, the limits and usage billing.

Which plan an organization is on: its own `plan`, else the plan whose code `HOTCROSS_DEFAULT_PLAN` names, else none
(no plan: every tool, no limit, nothing billed by usage — how Hotcross behaved before plans existed).
"""

from __future__ import annotations

import datetime
import fnmatch

from django.conf import settings

from accounts.choices import MeteredBilling
from accounts.models import Organization, Plan


def default_plan_code() -> str:
    return str(getattr(settings, "HOTCROSS_DEFAULT_PLAN", "") or "")


def effective_plan(organization: Organization) -> Plan | None:
    """The organization's plan, or the default plan, or None. Reads the database (at most one query)."""
    if organization.plan_id is not None:
        return organization.plan
    code = default_plan_code()
    return Plan.objects.filter(code=code).first() if code else None


def tool_patterns(plan: Plan | None) -> tuple[str, ...] | None:
    """The plan's tool names and patterns; None when it allows every tool (or there is no plan)."""
    if plan is None or plan.allows_all_tools:
        return None
    return tuple(line.strip() for line in plan.allowed_tools.splitlines() if line.strip())


def tool_allowed(patterns: tuple[str, ...] | None, tool_name: str) -> bool:
    """Whether a tool is in a plan whose `tool_patterns()` are these (shell-style, case-sensitive)."""
    if patterns is None:
        return True
    return any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in patterns)


def monthly_cap(plan: Plan | None, seats: int) -> int | None:
    """The organization's calls per calendar month (UTC): calls per seat × seats; None when uncapped."""
    if plan is None or plan.monthly_calls_per_seat is None:
        return None
    return plan.monthly_calls_per_seat * max(seats, 0)


def bills_usage(plan: Plan | None) -> bool:
    """Whether some of the plan's calls are reported to Stripe as meter events."""
    return plan is not None and plan.metered_billing != MeteredBilling.NONE and bool(plan.stripe_meter_event_name)


def month_start(moment: datetime.datetime) -> datetime.datetime:
    """The start (UTC) of the calendar month that `moment` falls in: monthly caps and overage count from there."""
    moment = moment.astimezone(datetime.UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
