"""Call admission (issue 16): whether the organization's plan lets a developer's tool call be served, for one call on
`/mcp` (`admit`, async, on every `tools/call`) or for a batch of calls reported from elsewhere (`POST /api/v1/usage`:
`require_tools`, then `admit_batch`, sync); and (issue 28) every other request that reaches an upstream's content:
`prompts/get` (`admit_prompt`), `resources/read` (`admit_resource`) and `completion/complete` (`admit_completion`).
Transport-neutral: a refusal is a `CallRefused` (a stable code, a message for people, `retry_after`, and `data` for
programs), which `mcp_bridge.admission` makes a JSON-RPC error (and HTTP 429) and `api.reported_usage` an HTTP
answer.

The rules, in this order:

- the tool must be one of the plan's tools (`tool_not_in_plan`); `tools/list` shows only those (`listed_tools`);
- a plan that refuses at its monthly cap (`accounts.plans.cap`: calls per seat × seats, calendar month UTC) refuses
  once the organization has made it (`monthly_cap_reached`); a plan that bills overage lets calls through. One call
  reads the month's calls as this process knows them (`accounts.monthly_use.amonthly_calls`, ≤ 1 s old); a batch
  reads each of its months' calls from the rollups and must fit whole;
- the plan's calls per minute, per developer and per organization: one token each from the buckets of
  `accounts.rate_buckets` (a batch: one per call, all or none), else `rate_limited` with the wait.

A refused call is not served and not usage; an admitted one is counted towards this process's view of the cap.

Prompts, resources and completions (issue 28) go through the same rules, each with its own allow-list:

- the prompt must be one of the plan's prompts (`prompt_not_in_plan`), the resource's URI one of its resources
  (`resource_not_in_plan`); a completion follows what it completes: a prompt's argument (the prompt's rule) or a
  resource template's (the template's URI template, by the resource rule); `prompts/list`, `resources/list` and
  `resources/templates/list` show only those (`listed_prompts`, `listed_resources`, `listed_templates`);
- a reached monthly cap refuses them on a plan that refuses at its cap (`monthly_cap_reached`);
- each takes one token from the rate-limit buckets, as a call does (`rate_limited`).

They are not usage: not metered, not billed, not counted towards the cap (a client may ask for a completion at every
keystroke; they read what the tools wrote).
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
PROMPT_NOT_IN_PLAN = "prompt_not_in_plan"
RESOURCE_NOT_IN_PLAN = "resource_not_in_plan"
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


def listed_prompts(terms: PlanTerms, prompts: list[Any]) -> list[Any]:
    """Those of `prompts` (listed prompts: dicts with a `name`) that a plan with these terms shows."""
    if terms.prompts is None:
        return prompts
    return [prompt for prompt in prompts if isinstance(prompt, dict) and terms.allows_prompt(_text(prompt, "name"))]


def listed_resources(terms: PlanTerms, resources: list[Any]) -> list[Any]:
    """Those of `resources` (listed resources: dicts with a `uri`) that a plan with these terms shows."""
    if terms.resources is None:
        return resources
    return [item for item in resources if isinstance(item, dict) and terms.allows_resource(_text(item, "uri"))]


def listed_templates(terms: PlanTerms, templates: list[Any]) -> list[Any]:
    """Those of `templates` (listed resource templates: dicts with a `uriTemplate`) that a plan with these terms
    shows: the URI template itself must match one of the plan's resource lines."""
    if terms.resources is None:
        return templates
    return [item for item in templates if isinstance(item, dict) and terms.allows_resource(_text(item, "uriTemplate"))]


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


# --- one call --------------------------------------------------------------------------------------------------------


async def admit(principal: Principal, tool_name: Any) -> None:
    """The plan's rules for one call of `tool_name` by `principal`: returns when it may be served (and counts it
    towards the cap), else raises `CallRefused`. `DatabaseUnavailable` when the plans or the month's calls cannot be
    read."""
    terms = await aterms_for(principal.plan_id)
    if isinstance(tool_name, str) and not terms.allows(tool_name):
        raise not_in_plan(terms, tool_name)
    await _within_limits(principal, terms, usage=True)


async def admit_prompt(principal: Principal, prompt_name: Any) -> None:
    """The plan's rules for one `prompts/get` of `prompt_name`: the prompt, the cap, the rate limits (not usage)."""
    terms = await aterms_for(principal.plan_id)
    if not terms.allows_prompt(prompt_name if isinstance(prompt_name, str) else ""):
        raise prompt_not_in_plan(terms, str(prompt_name))
    await _within_limits(principal, terms, usage=False)


async def admit_resource(principal: Principal, uri: Any) -> None:
    """The plan's rules for one `resources/read` of `uri`: the resource, the cap, the rate limits (not usage)."""
    terms = await aterms_for(principal.plan_id)
    if not terms.allows_resource(uri if isinstance(uri, str) else ""):
        raise resource_not_in_plan(terms, str(uri))
    await _within_limits(principal, terms, usage=False)


async def admit_completion(principal: Principal, ref: Any) -> None:
    """The plan's rules for one `completion/complete` of `ref` (`{"type": "ref/prompt", "name"}` or
    `{"type": "ref/resource", "uri"}`, the URI template): what it completes must be in the plan, then the cap and the
    rate limits (not usage). Any other reference is refused when the plan restricts prompts or resources (the server
    answers it as invalid otherwise)."""
    terms = await aterms_for(principal.plan_id)
    kind = ref.get("type") if isinstance(ref, dict) else None
    if kind == "ref/prompt":
        name = _text(ref, "name")
        if not terms.allows_prompt(name):
            raise prompt_not_in_plan(terms, name)
    elif kind == "ref/resource":
        uri = _text(ref, "uri")
        if not terms.allows_resource(uri):
            raise resource_not_in_plan(terms, uri)
    elif terms.prompts is not None:
        raise prompt_not_in_plan(terms, "")
    elif terms.resources is not None:
        raise resource_not_in_plan(terms, "")
    await _within_limits(principal, terms, usage=False)


async def _within_limits(principal: Principal, terms: PlanTerms, *, usage: bool) -> None:
    """The monthly cap (a refusing plan's, reached) and the rate limits, for a request of `principal`; `usage`: it is
    a call, counted towards this process's view of the cap once admitted."""
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
    if cap is not None and usage:
        monthly_use.monthly_calls.count(principal.organization_id)


def not_in_plan(terms: PlanTerms, tool_name: str) -> CallRefused:
    return _outside_plan(TOOL_NOT_IN_PLAN, "tool", terms, tool_name)


def prompt_not_in_plan(terms: PlanTerms, prompt_name: str) -> CallRefused:
    return _outside_plan(PROMPT_NOT_IN_PLAN, "prompt", terms, prompt_name)


def resource_not_in_plan(terms: PlanTerms, uri: str) -> CallRefused:
    return _outside_plan(RESOURCE_NOT_IN_PLAN, "resource", terms, uri)


def _outside_plan(code: str, what: str, terms: PlanTerms, name: str) -> CallRefused:
    return CallRefused(
        code,
        f"The {what} {name[:100]!r} is not in your organization's plan, {terms.name} ({terms.code}). "
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
