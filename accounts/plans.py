"""What a plan means, as pure functions shared by the key check, call admission, monthly use and usage billing.

Which plan an organization is on: its own `plan`, else the plan whose code `HOTCROSS_DEFAULT_PLAN` names, else none
(no plan: every tool, no limit, nothing billed by usage — how Hotcross behaved before plans existed).

On the hot path (every MCP request) the plan comes from the key check's `Principal.plan_id` (≤ 1 s old) and a
per-process table of every plan's `PlanTerms`, read at most once per `HOTCROSS_KEY_CACHE_SECONDS` (≤ 1 s): so a staff
edit of a plan, a change of an organization's plan (admin or Stripe webhook) reaches every worker within a second.
"""

from __future__ import annotations

import datetime
import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import ExpressionWrapper, IntegerField, Value
from django.db.models.expressions import Combinable
from django.db.models.functions import Greatest

from accounts.choices import AtCap, MeteredBilling
from accounts.models import Organization, Plan
from infra.db import BOOKKEEPING, run_in_pool


def default_plan_code() -> str:
    return str(getattr(settings, "HOTCROSS_DEFAULT_PLAN", "") or "")


def effective_plan(organization: Organization) -> Plan | None:
    """The organization's plan, or the default plan, or None. Reads the database (at most one query)."""
    if organization.plan_id is not None:
        return organization.plan
    code = default_plan_code()
    return Plan.objects.filter(code=code).first() if code else None


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def tool_patterns(plan: Plan | None) -> tuple[str, ...] | None:
    """The plan's tool names and patterns; None when it allows every tool (or there is no plan)."""
    if plan is None or plan.allows_all_tools:
        return None
    return _lines(plan.allowed_tools)


def prompt_patterns(plan: Plan | None) -> tuple[str, ...] | None:
    """The plan's prompt names and patterns; None when it allows every prompt (or there is no plan); () for none."""
    if plan is None or plan.allows_all_prompts:
        return None
    return _lines(plan.allowed_prompts)


def resource_patterns(plan: Plan | None) -> tuple[str, ...] | None:
    """The plan's resource URIs and patterns; None when it allows every resource (or there is no plan); () for
    none."""
    if plan is None or plan.allows_all_resources:
        return None
    return _lines(plan.allowed_resources)


def tool_allowed(patterns: tuple[str, ...] | None, tool_name: str) -> bool:
    """Whether a name (a tool's, a prompt's, a resource's URI or URI template) is allowed by these patterns
    (`tool_patterns()` and the like: shell-style, case-sensitive; None: every name)."""
    if patterns is None:
        return True
    return any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in patterns)


# The monthly cap, in Python and in SQL side by side: calls per seat × seats (at least 0); no calls per seat: uncapped.


def cap(calls_per_seat: int | None, seats: int) -> int | None:
    """An organization's calls per calendar month (UTC) at `calls_per_seat` and `seats`; None when uncapped."""
    if calls_per_seat is None:
        return None
    return calls_per_seat * max(seats, 0)


def cap_expression(calls_per_seat: Combinable, seats: Combinable) -> ExpressionWrapper:
    """`cap` as a database expression of two integer expressions (NULL calls per seat: NULL, uncapped)."""
    return ExpressionWrapper(calls_per_seat * Greatest(seats, Value(0)), output_field=IntegerField())


def monthly_cap(plan: Plan | None, seats: int) -> int | None:
    """The organization's calls per calendar month (UTC) on `plan`: `cap`; None when uncapped (or no plan)."""
    return None if plan is None else cap(plan.monthly_calls_per_seat, seats)


def bills_usage(plan: Plan | None) -> bool:
    """Whether some of the plan's calls are reported to Stripe as meter events."""
    return plan is not None and plan.metered_billing != MeteredBilling.NONE and bool(plan.stripe_meter_event_name)


def month_start(moment: datetime.datetime) -> datetime.datetime:
    """The start (UTC) of the calendar month that `moment` falls in: monthly caps and overage count from there."""
    moment = moment.astimezone(datetime.UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# --- the plan in effect on every check: a per-process table, at most a second old -----------------------------------


@dataclass(frozen=True, slots=True)
class PlanTerms:
    """What the bridge enforces for a plan: a snapshot of a `Plan` row (or of "no plan": `NO_PLAN`)."""

    id: int | None
    code: str
    name: str
    tools: tuple[str, ...] | None  # `tool_patterns()`: None = every tool
    rate_limit_per_developer: int | None
    rate_limit_per_organization: int | None
    monthly_calls_per_seat: int | None
    at_cap: str
    prompts: tuple[str, ...] | None = None  # `prompt_patterns()`: None = every prompt, () = none
    resources: tuple[str, ...] | None = None  # `resource_patterns()`: None = every resource, () = none

    def allows(self, tool_name: str) -> bool:
        return tool_allowed(self.tools, tool_name)

    def allows_prompt(self, prompt_name: str) -> bool:
        return tool_allowed(self.prompts, prompt_name)

    def allows_resource(self, uri: str) -> bool:
        """A resource's URI, or a resource template's URI template."""
        return tool_allowed(self.resources, uri)

    def monthly_cap(self, seats: int) -> int | None:
        return cap(self.monthly_calls_per_seat, seats)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.code})" if self.code else "no plan"

    def describe(self, seats: int) -> dict[str, Any]:
        """The plan and its limits as `whoami` and `/api/v1/keys/verify` state them."""
        return {
            "code": self.code or None,
            "name": self.name or None,
            "tools": "all" if self.tools is None else list(self.tools),
            "prompts": "all" if self.prompts is None else list(self.prompts),
            "resources": "all" if self.resources is None else list(self.resources),
            "rate_limit_per_developer_per_minute": self.rate_limit_per_developer,
            "rate_limit_per_organization_per_minute": self.rate_limit_per_organization,
            "monthly_calls_per_seat": self.monthly_calls_per_seat,
            "monthly_cap": self.monthly_cap(seats),
            "at_cap": self.at_cap if self.monthly_calls_per_seat is not None else None,
        }


NO_PLAN = PlanTerms(None, "", "", None, None, None, None, AtCap.REFUSE)


def terms(plan: Plan | None) -> PlanTerms:
    if plan is None:
        return NO_PLAN
    return PlanTerms(
        id=plan.id,
        code=plan.code,
        name=plan.name,
        tools=tool_patterns(plan),
        rate_limit_per_developer=plan.rate_limit_per_developer,
        rate_limit_per_organization=plan.rate_limit_per_organization,
        monthly_calls_per_seat=plan.monthly_calls_per_seat,
        at_cap=plan.at_cap,
        prompts=prompt_patterns(plan),
        resources=resource_patterns(plan),
    )


@dataclass(frozen=True, slots=True)
class _Table:
    expires_at: float
    by_id: dict[int, PlanTerms]
    default: PlanTerms


_table: _Table | None = None
_last: _Table | None = None  # the table last read, kept even when `_ttl()` is 0 (`plan_code`)
clock: Callable[[], float] = time.monotonic
MAX_TABLE_SECONDS = 1.0


def _ttl() -> float:
    """How long the table is kept: `HOTCROSS_KEY_CACHE_SECONDS`, at most a second, as long as the key check keeps its
    answers (`Principal.plan_id`), so a plan's change and an organization's reach calls together."""
    seconds = float(getattr(settings, "HOTCROSS_KEY_CACHE_SECONDS", MAX_TABLE_SECONDS))
    return max(0.0, min(seconds, MAX_TABLE_SECONDS))


def _load_table() -> _Table:
    """Every plan (there are few): one query."""
    global _table
    by_id = {plan.id: terms(plan) for plan in Plan.objects.all()}
    code = default_plan_code()
    default = next((found for found in by_id.values() if code and found.code == code), NO_PLAN)
    global _last
    table = _last = _Table(clock() + _ttl(), by_id, default)
    if _ttl() > 0:
        _table = table
    return table


def _fresh_table(plan_id: int | None) -> _Table | None:
    """The table when it is fresh and knows `plan_id` (a plan made after it was read is read again at once)."""
    table = _table
    if table is None or table.expires_at <= clock():
        return None
    return table if plan_id is None or plan_id in table.by_id else None


def _lookup(table: _Table, plan_id: int | None) -> PlanTerms:
    if plan_id is None:
        return table.default
    return table.by_id.get(plan_id, table.default)  # a plan the database no longer has: the default


def terms_for(plan_id: int | None) -> PlanTerms:
    """The terms of an organization whose `plan_id` this is (None: the default plan). Sync; at most one query a
    second per process."""
    return _lookup(_fresh_table(plan_id) or _load_table(), plan_id)


async def aterms_for(plan_id: int | None) -> PlanTerms:
    """`terms_for` for async code: from memory, or loaded on the bookkeeping threads (`DatabaseUnavailable` when the
    database cannot be reached)."""
    table = _fresh_table(plan_id)
    if table is None:
        table = await run_in_pool(BOOKKEEPING, _load_table)
    return _lookup(table, plan_id)


def plan_code(plan_id: int | None) -> str | None:
    """The code of the plan the admission of this call just read (`aterms_for` ran first), from memory, without a
    query; None for no plan (or before any was read). For naming the plan to an upstream (`hotcross/plan`)."""
    table = _table or _last
    if table is None:
        return None
    return _lookup(table, plan_id).code or None


def forget_table() -> None:
    """This process reads the plans again at its next check (writes through `accounts.services.plans` call it;
    other processes see the change within `_ttl()`)."""
    global _table
    _table = None
