"""The plan's admission on every MCP request (issue 16), as MCP clients see it: which tools, prompts and resources a
developer sees and may call, get or read (issue 28). The rules are `accounts.admission`'s; this module only
translates its answers.

`AdmissionMiddleware` runs inside `CallerMiddleware` (the caller is bound) and outside `MeteringMiddleware`, for the
built-in tools, the tools of `HOTCROSS_MCP_TOOLS` and the gateway's upstream tools alike, over stdio and HTTP:

- `tools/list`, `prompts/list`, `resources/list` and `resources/templates/list` list only what the caller's plan
  allows;
- a refused `tools/call`, `prompts/get`, `resources/read` or `completion/complete` (`accounts.admission.CallRefused`)
  is a JSON-RPC error `PLAN_REFUSED` (-32003) whose message starts with the refusal's code (`tool_not_in_plan`,
  `prompt_not_in_plan`, `resource_not_in_plan`, `monthly_cap_reached`, `rate_limited`) and whose
  `data = {"code", "message", …}` adds the refusal's data (`plan`; `monthly_cap`; `retry_after` in seconds and
  `scope`); over HTTP a refusal with a wait is answered 429 with `Retry-After` (whole seconds, rounded up) through
  the request's `mcp_bridge.auth.RefusalNote`;
- the plans or the month's calls cannot be read: the key check's unavailable error (-32002).

A refused request never reaches the metering (it is not usage) and is counted in `/metrics` as
`hotcross_tool_calls_refused_total{reason=…}` (prompts, resources and completions too). The gateway's direct
forwarding (`mcp_bridge.gateway.direct`) admits its calls through `admit_call`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from accounts import admission
from accounts.admission import CallRefused
from accounts.credentials import Principal
from accounts.plans import PlanTerms, aterms_for
from infra import metrics
from infra.db import DatabaseUnavailable
from mcp_bridge.auth import RefusalNote, current_caller, refusal_note, unavailable_error

logger = logging.getLogger(__name__)

PLAN_REFUSED = -32003  # JSON-RPC error code of the plan's refusals; `data.code` says which


# Requests the plan admits (`accounts.admission`), by method: what in their params it judges.
_ADMITTED: dict[str, tuple[Callable[[Principal, Any], Awaitable[None]], str]] = {
    "tools/call": (admission.admit, "name"),
    "prompts/get": (admission.admit_prompt, "name"),
    "resources/read": (admission.admit_resource, "uri"),
    "resources/subscribe": (admission.admit_resource, "uri"),  # a subscription is admitted as a read of it
    "completion/complete": (admission.admit_completion, "ref"),
}

# Lists the plan filters, by method: the result's key and the filter.
_LISTED: dict[str, tuple[str, Callable[[PlanTerms, list[Any]], list[Any]]]] = {
    "tools/list": ("tools", admission.listed_tools),
    "prompts/list": ("prompts", admission.listed_prompts),
    "resources/list": ("resources", admission.listed_resources),
    "resources/templates/list": ("resourceTemplates", admission.listed_templates),
}


def refusal_error(refused: CallRefused, note: RefusalNote | None = None, method: str = "tools/call") -> MCPError:
    """Count a refusal for `/metrics`, note its wait for the HTTP answer (`note`: the request's, None over stdio), and
    make it the client's JSON-RPC error."""
    metrics.TOOL_CALLS_REFUSED.labels(refused.code).inc()
    logger.info("mcp %s refused code=%s", method, refused.code)
    if refused.retry_after is not None and note is not None:
        note.wait(refused.retry_after)
    return MCPError(
        code=PLAN_REFUSED,
        message=f"{refused.code}: {refused.message}",
        data={"code": refused.code, "message": refused.message, **refused.data},
    )


class AdmissionMiddleware:
    """MCP server middleware: the caller's plan decides what the lists show and which calls, prompts, resource reads
    and completions are served."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: Callable[..., Awaitable[Any]]) -> Any:
        if ctx.request_id is None:
            return await call_next(ctx)
        admitted = _ADMITTED.get(ctx.method)
        if admitted is not None:
            admit, key = admitted
            params = ctx.params if isinstance(ctx.params, dict) else {}
            try:
                await admit(current_caller(), params.get(key))
            except CallRefused as refused:
                note = refusal_note(getattr(ctx.request, "scope", None))
                raise refusal_error(refused, note, ctx.method) from None
            except DatabaseUnavailable as exc:
                raise unavailable_error(exc) from None
            return await call_next(ctx)
        listed = _LISTED.get(ctx.method)
        if listed is not None:
            key, keep = listed
            try:
                terms = await aterms_for(current_caller().plan_id)
            except DatabaseUnavailable as exc:
                raise unavailable_error(exc) from None
            result = await call_next(ctx)
            if isinstance(result, dict) and isinstance(result.get(key), list):
                result = {**result, key: keep(terms, result[key])}
            return result
        return await call_next(ctx)


async def admit_call(principal: Principal, name: str, note: RefusalNote | None) -> None:
    """The plan's rules for one `tools/call` of `name` by `principal`, outside the MCP server (the gateway's direct
    forwarding; `note`: its request's): returns when the call may be served, else raises the client's error."""
    try:
        await admission.admit(principal, name)
    except CallRefused as refused:
        raise refusal_error(refused, note) from None
    except DatabaseUnavailable as exc:
        raise unavailable_error(exc) from None
