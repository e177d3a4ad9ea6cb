"""Call admission (issue 16): whether the organization's plan lets a developer's tool call be served, for one call on
`/mcp` (`admit`, async, on every `tools/call`) or for a batch of calls reported from elsewhere (`POST /api/v1/usage`:
`require_tools`, then `admit_batch`, sync). Transport-neutral: a refusal is a `CallRefused` (a stable code, a message
for people, `retry_after`, and `data` for programs), which `mcp_bridge.admission` makes a JSON-RPC error (and HTTP
429) and `api.reported_usage` an HTTP answer.

The rules, in this order:

- the tool must be one of the plan's tools (`tool_not_in_plan`); `tools/list` shows only those (`listed_tools`);
- a plan that refuses at its monthly cap (`accounts.plans.cap`: calls per seat × seats, calendar month UTC) refuses
  once the organization has made it (`monthly_cap_reached`); a plan that bills overage lets calls through. One call
  reads the month's calls as this process knows them (`accounts.monthly_use.amonthly_calls`, ≤ 1 s old); a batch
  reads each of its months' calls from the rollups and must fit whole;
- the plan's calls per minute, per developer and per organization: one token each from the buckets of
  `accounts.rate_buckets` (a batch: one per call, all or none), else `rate_limited` with the wait.

A refused call is not served and not usage; an admitted one is counted towards this process's view of the cap.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Any

from accounts import monthly_use, rate_buckets
from accounts.choices import AtCap
from accounts.credentials import Principal
from accounts.plans import PlanTerms, aterms_for, month_start

TOOL_NOT_IN_PLAN = "tool_not_in_plan"
MONTHLY_CAP_REACHED = "monthly_cap_reached"
RATE_LIMITED = "rate_limited"


class CallRefused(Exception):
    """A call (or a batch) the plan does not allow: a stable `code`, a `message` for people, `retry_after` (seconds;
    None: waiting does not help), `data` for programs, and for a batch the first problems found, each with the
    event's index (`events`)."""

    def __init__(
        self,
        code: str,
        message: str,
        retry_after: float | None = None,
        data: dict[str, Any] | None = None,
        events: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.data = data or {}
        self.events = list(events)


def listed_tools(terms: PlanTerms, tools: list[Any]) -> list[Any]:
    """Those of `tools` (listed tools: dicts with a `name`) that a plan with these terms shows."""
    if terms.tools is None:
        return tools
    return [tool for tool in tools if terms.allows(tool.get("name", ""))]


# --- one call --------------------------------------------------------------------------------------------------------


async def admit(principal: Principal, tool_name: Any) -> None:
    """The plan's rules for one call of `tool_name` by `principal`: returns when it may be served (and counts it
    towards the cap), else raises `CallRefused`. `DatabaseUnavailable` when the plans or the month's calls cannot be
    read."""
    terms = await aterms_for(principal.plan_id)
    if isinstance(tool_name, str) and not terms.allows(tool_name):
        raise not_in_plan(terms, tool_name)
    cap = terms.monthly_cap(principal.max_seats)
    if cap is not None and terms.at_cap == AtCap.REFUSE:
        if await monthly_use.amonthly_calls(principal.organization_id) >= cap:
            raise cap_reached(terms, cap)
    if terms.rate_limit_per_developer or terms.rate_limit_per_organization:
        decision = await rate_buckets.acheck(
            principal.developer_id,
            principal.organization_id,
            terms.rate_limit_per_developer,
            terms.rate_limit_per_organization,
        )
        if not decision.allowed:
            raise rate_limited(terms, decision)
    if cap is not None:
        monthly_use.monthly_calls.count(principal.organization_id)


def not_in_plan(terms: PlanTerms, tool_name: str) -> CallRefused:
    return CallRefused(
        TOOL_NOT_IN_PLAN,
        f"The tool {tool_name[:100]!r} is not in your organization's plan, {terms.name} ({terms.code}). "
        "Ask an administrator of your organization about a plan that includes it.",
        data={"plan": terms.code},
    )


def cap_reached(terms: PlanTerms, cap: int) -> CallRefused:
    return CallRefused(
        MONTHLY_CAP_REACHED,
        f"Your organization has made its {cap} calls for this month (plan {terms.name} ({terms.code})). Calls work "
        "again on the 1st (UTC), or sooner with more seats or another plan: ask an administrator.",
        data={"plan": terms.code, "monthly_cap": cap},
    )


def rate_limited(terms: PlanTerms, decision: rate_buckets.Decision) -> CallRefused:
    wait = max(decision.retry_after, 0.001)
    if decision.unavailable:
        message = f"Rate limits cannot be checked right now, so calls are refused. Retry in {math.ceil(wait)} s."
    else:
        whose = _whose(decision, "your", "your organization's")
        message = (
            f"Over {whose} rate limit of {_limit(terms, decision)} calls per minute (plan {terms.name} "
            f"({terms.code})). Retry in {math.ceil(wait)} s."
        )
    data = {"plan": terms.code, "retry_after": round(wait, 3), "scope": decision.scope}
    return CallRefused(RATE_LIMITED, message, retry_after=decision.retry_after, data=data)


# --- a batch of calls served elsewhere (reported usage) --------------------------------------------------------------


def require_tools(terms: PlanTerms, tool_names: Sequence[str]) -> None:
    """Every call of a batch names one of the plan's tools, else `CallRefused` (`tool_not_in_plan`) naming them."""
    outside = [(index, tool) for index, tool in enumerate(tool_names) if not terms.allows(tool)]
    if not outside:
        return
    events = [{"index": index, "message": f"The tool {tool[:80]!r} is not in the plan."} for index, tool in outside]
    raise CallRefused(
        TOOL_NOT_IN_PLAN,
        f"{len(outside)} of the {len(tool_names)} events name a tool that is not in the plan {terms.label}; nothing "
        f"was recorded. The first: event {outside[0][0]}: {outside[0][1][:80]!r}.",
        data={"plan": terms.code or None},
        events=events[:20],
    )


def admit_batch(principal: Principal, terms: PlanTerms, times: Sequence[datetime.datetime]) -> None:
    """The cap and the rate limits for a batch of calls made at `times` (all or none): returns when the batch may be
    recorded (its rate-limit tokens taken), else raises `CallRefused`. The caller holds the organization's row lock,
    so two batches cannot both pass the cap."""
    _require_room_under_cap(principal, terms, times)
    _take_rate_tokens(principal, terms, len(times))


def _require_room_under_cap(principal: Principal, terms: PlanTerms, times: Sequence[datetime.datetime]) -> None:
    """A plan that refuses at its monthly cap: the organization's calls of each month the calls fall in, with them,
    stay within the cap."""
    cap = terms.monthly_cap(principal.max_seats)
    if cap is None or terms.at_cap != AtCap.REFUSE:
        return
    per_month: dict[datetime.datetime, int] = {}
    for at in times:
        start = month_start(at)
        per_month[start] = per_month.get(start, 0) + 1
    for start, count in sorted(per_month.items()):
        used = monthly_use.calls_in_month(principal.organization_id, start)
        if used + count > cap:
            room = max(0, cap - used)
            raise CallRefused(
                MONTHLY_CAP_REACHED,
                f"The organization's monthly cap is {cap} calls on the plan {terms.label} and {used} are used in "
                f"{start:%Y-%m}: {count} more would pass it, {room} would fit. Nothing was recorded.",
                data={"plan": terms.code or None, "monthly_cap": cap, "month": f"{start:%Y-%m}", "remaining": room},
            )


def _take_rate_tokens(principal: Principal, terms: PlanTerms, n: int) -> None:
    decision = rate_buckets.check_many(
        principal.developer_id,
        principal.organization_id,
        terms.rate_limit_per_developer,
        terms.rate_limit_per_organization,
        n,
    )
    if decision.allowed:
        return
    wait = max(1, math.ceil(decision.retry_after))
    if decision.unavailable:
        message = "Rate limits cannot be checked right now; nothing was recorded. Send the batch again shortly."
    else:
        whose = _whose(decision, "the developer's", "the organization's")
        message = (
            f"{n} events would pass {whose} rate limit of {_limit(terms, decision)} calls per minute on the plan "
            f"{terms.label} (reported calls count as calls); nothing was recorded. Send the batch again in {wait} s."
        )
    data = {"plan": terms.code or None, "scope": decision.scope or None, "retry_after": wait}
    raise CallRefused(RATE_LIMITED, message, retry_after=wait, data=data)


def _limit(terms: PlanTerms, decision: rate_buckets.Decision) -> int | None:
    """The calls per minute of the limit that refused."""
    if decision.scope == rate_buckets.DEVELOPER:
        return terms.rate_limit_per_developer
    return terms.rate_limit_per_organization


def _whose(decision: rate_buckets.Decision, developer: str, organization: str) -> str:
    return developer if decision.scope == rate_buckets.DEVELOPER else organization
