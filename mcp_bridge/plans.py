"""The plan in effect on every MCP request (issue 16): which tools a developer sees and may call.

`PlanMiddleware` runs inside `CallerMiddleware` (the caller is bound) and outside `MeteringMiddleware`, for the
built-in tools, the tools of `HOTCROSS_MCP_TOOLS` and the gateway's upstream tools alike, over stdio and HTTP:

- `tools/list` lists only the tools the caller's plan allows;
- `tools/call` of a tool outside the plan is refused with a JSON-RPC error `PLAN_REFUSED` (-32003) whose message starts
  with `tool_not_in_plan` and names the plan, and `data = {"code", "message", "plan"}`;
- a `tools/call` over the plan's rate limits (`accounts.limits`) is refused with `rate_limited` (-32003, and
  `data.retry_after` in seconds, `data.scope` developer or organization); over HTTP the answer is 429 with
  `Retry-After` (whole seconds, rounded up);
- once the organization has made its monthly cap (calls per seat × seats, calendar month UTC), a plan that refuses at
  the cap refuses with `monthly_cap_reached` (-32003); a plan that bills overage lets calls through.

A refused call never reaches the metering (it is not usage) and is counted in `/metrics` as
`hotcross_tool_calls_refused_total{reason=…}`. The plan is `accounts.plans.aterms_for(principal.plan_id)`: the key
check's plan id (≤ 1 s old) and the per-process plan table (≤ 1 s old).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from accounts import limits
from accounts.authentication import Principal
from accounts.choices import AtCap
from accounts.plans import PlanTerms, aterms_for
from infra import metrics
from infra.db import DatabaseUnavailable
from mcp_bridge.auth import current_caller, http_refusal, unavailable_error

logger = logging.getLogger(__name__)

PLAN_REFUSED = -32003  # JSON-RPC error code of the plan's refusals; `data.code` says which
TOOL_NOT_IN_PLAN = "tool_not_in_plan"
RATE_LIMITED = "rate_limited"
MONTHLY_CAP_REACHED = "monthly_cap_reached"


class PlanRefused(Exception):
    """A call the plan does not allow: a stable `code`, a message for people, and extra `data` for programs."""

    def __init__(self, code: str, message: str, **data: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def payload(self) -> dict[str, Any]:
        return {
            "code": PLAN_REFUSED,
            "message": f"{self.code}: {self.message}",
            "data": {"code": self.code, "message": self.message, **self.data},
        }

    def error(self) -> MCPError:
        payload = self.payload()
        return MCPError(code=payload["code"], message=payload["message"], data=payload["data"])


def not_in_plan(terms: PlanTerms, tool_name: str) -> PlanRefused:
    return PlanRefused(
        TOOL_NOT_IN_PLAN,
        f"The tool {tool_name[:100]!r} is not in your organization's plan, {terms.name} ({terms.code}). "
        "Ask an administrator of your organization about a plan that includes it.",
        plan=terms.code,
    )


def cap_reached(terms: PlanTerms, cap: int) -> PlanRefused:
    return PlanRefused(
        MONTHLY_CAP_REACHED,
        f"Your organization has made its {cap} calls for this month (plan {terms.name} ({terms.code})). Calls work "
        "again on the 1st (UTC), or sooner with more seats or another plan: ask an administrator.",
        plan=terms.code,
        monthly_cap=cap,
    )


def rate_limited(terms: PlanTerms, decision: limits.Decision) -> PlanRefused:
    wait = max(decision.retry_after, 0.001)
    if decision.unavailable:
        message = f"Rate limits cannot be checked right now, so calls are refused. Retry in {math.ceil(wait)} s."
    else:
        limit = (
            terms.rate_limit_per_developer if decision.scope == limits.DEVELOPER else terms.rate_limit_per_organization
        )
        whose = "your" if decision.scope == limits.DEVELOPER else "your organization's"
        message = (
            f"Over {whose} rate limit of {limit} calls per minute (plan {terms.name} ({terms.code})). "
            f"Retry in {math.ceil(wait)} s."
        )
    return PlanRefused(RATE_LIMITED, message, plan=terms.code, retry_after=round(wait, 3), scope=decision.scope)


def note_http_refusal(retry_after: float) -> None:
    note = http_refusal.get()
    if note is not None:
        note.append(retry_after)


def refused(exc: PlanRefused) -> MCPError:
    """Count a refusal for `/metrics` and turn it into the client's JSON-RPC error."""
    metrics.TOOL_CALLS_REFUSED.labels(exc.code).inc()
    logger.info("mcp tools/call refused code=%s", exc.code)
    return exc.error()


class PlanMiddleware:
    """MCP server middleware: the caller's plan decides what `tools/list` shows and which `tools/call` are served."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: Callable[..., Awaitable[Any]]) -> Any:
        if ctx.request_id is None or ctx.method not in ("tools/list", "tools/call"):
            return await call_next(ctx)
        principal = current_caller()
        try:
            terms = await aterms_for(principal.plan_id)
        except DatabaseUnavailable as exc:
            raise unavailable_error(exc) from None
        if ctx.method == "tools/list":
            result = await call_next(ctx)
            if terms.tools is not None and isinstance(result, dict) and isinstance(result.get("tools"), list):
                result = {**result, "tools": [tool for tool in result["tools"] if terms.allows(tool.get("name", ""))]}
            return result
        params = ctx.params if isinstance(ctx.params, dict) else {}
        await admit(terms, principal, params.get("name"))
        return await call_next(ctx)


async def admit_call(principal: Principal, name: str) -> None:
    """The plan's rules for one `tools/call` of `name` by `principal`, outside the MCP server (the gateway's direct
    forwarding, `mcp_bridge.gateway.direct`): returns when the call may be served, else raises the client's error."""
    try:
        terms = await aterms_for(principal.plan_id)
    except DatabaseUnavailable as exc:
        raise unavailable_error(exc) from None
    await admit(terms, principal, name)


async def admit(terms: PlanTerms, principal: Principal, name: Any) -> None:
    """Tool gating, the monthly cap and the rate limits of `terms` for one call of `name`: returns when it may be
    served (and counts it towards the cap), else raises the refusal as the client's JSON-RPC error."""
    if isinstance(name, str) and not terms.allows(name):
        raise refused(not_in_plan(terms, name))
    cap = terms.monthly_cap(principal.max_seats)
    if cap is not None and terms.at_cap == AtCap.REFUSE:
        try:
            used = await limits.amonthly_calls(principal.organization_id)
        except DatabaseUnavailable as exc:
            raise unavailable_error(exc) from None
        if used >= cap:
            raise refused(cap_reached(terms, cap))
    if terms.rate_limit_per_developer or terms.rate_limit_per_organization:
        decision = await limits.acheck(
            principal.developer_id,
            principal.organization_id,
            terms.rate_limit_per_developer,
            terms.rate_limit_per_organization,
        )
        if not decision.allowed:
            note_http_refusal(decision.retry_after)
            raise refused(rate_limited(terms, decision))
    if cap is not None:
        limits.monthly_calls.count(principal.organization_id)
