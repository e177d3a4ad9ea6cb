"""Writes to plans, and to which plan an organization is on (issue 16).

Staff edit plans and pick an organization's plan in the admin; a Stripe subscription names its plan in the price's
(else the product's) metadata `hotcross_plan=<code>` (`accounts.billing.prices.plan_code`), applied by the webhook and
`orgs sync-stripe` through `apply_subscription_state`. Every write forgets this process's plan table and key checks
(`accounts.plans`, `accounts.check_cache`); other processes follow within a second.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.db import transaction

from accounts import audit, check_cache, plans
from accounts.exceptions import InvalidInput
from accounts.models import Organization, Plan
from accounts.services._base import lock_organization, refresh_from, validate

logger = logging.getLogger(__name__)

MAX_TOOL_PATTERNS = 200
_PATTERN = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!/:]{1,128}$")
_URI_PATTERN = re.compile(r"^[^\s\x00-\x1f\x7f]{1,512}$")  # a URI (template) or a pattern of them: no spaces
PLAN_FIELDS = (
    "code",
    "name",
    "allows_all_tools",
    "allowed_tools",
    "allows_all_prompts",
    "allowed_prompts",
    "allows_all_resources",
    "allowed_resources",
    "rate_limit_per_developer",
    "rate_limit_per_organization",
    "monthly_calls_per_seat",
    "at_cap",
    "metered_billing",
    "stripe_meter_event_name",
)


def _clean_lines(text: str, *, what: str, pattern: re.Pattern[str], allowed: str) -> list[str]:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    bad = [line for line in lines if not pattern.match(line) or line.count("[") != line.count("]")]
    if bad:
        raise InvalidInput(
            f"Not a {what} or pattern: {', '.join(repr(line[:60]) for line in bad[:5])}. {allowed}, one per line."
        )
    if len(lines) > MAX_TOOL_PATTERNS:
        raise InvalidInput(f"At most {MAX_TOOL_PATTERNS} {what} lines, not {len(lines)}.")
    return list(dict.fromkeys(lines))


def clean_tool_patterns(text: str, *, allows_all_tools: bool) -> str:
    """The plan's tool lines, one name or shell-style pattern (`*`, `?`, `[…]`) per line, trimmed; `InvalidInput`
    for a line that cannot be a tool name or pattern, or for a plan that allows no tool at all."""
    allowed = "Use letters, digits, _ . - and the wildcards * ? [ ]"
    lines = _clean_lines(text, what="tool name", pattern=_PATTERN, allowed=allowed)
    if not allows_all_tools and not lines:
        raise InvalidInput("List the plan's tools (one name or pattern per line), or tick 'every tool'.")
    return "\n".join(lines)


def clean_prompt_patterns(text: str) -> str:
    """The plan's prompt lines, as tool lines are written; none is allowed (the plan has no prompt)."""
    allowed = "Use letters, digits, _ . - and the wildcards * ? [ ]"
    return "\n".join(_clean_lines(text, what="prompt name", pattern=_PATTERN, allowed=allowed))


def clean_resource_patterns(text: str) -> str:
    """The plan's resource lines: one URI, URI template or shell-style pattern of them (`notes://*`) per line, no
    spaces; none is allowed (the plan has no resource)."""
    allowed = "Write a URI or a pattern such as notes://* (no spaces)"
    return "\n".join(_clean_lines(text, what="resource URI", pattern=_URI_PATTERN, allowed=allowed))


def save_plan(*, plan: Plan, actor: Any = None) -> Plan:
    """Create or change a plan (its fields already set). Calls follow the new terms within a second."""
    adding = plan._state.adding
    before = {} if adding else dict(Plan.objects.filter(pk=plan.pk).values(*PLAN_FIELDS).first() or {})
    plan.code = (plan.code or "").strip()
    plan.name = (plan.name or "").strip()
    plan.allowed_tools = clean_tool_patterns(plan.allowed_tools, allows_all_tools=plan.allows_all_tools)
    plan.allowed_prompts = clean_prompt_patterns(plan.allowed_prompts)
    plan.allowed_resources = clean_resource_patterns(plan.allowed_resources)
    validate(plan)
    if Plan.objects.filter(code=plan.code).exclude(pk=plan.pk).exists():
        raise InvalidInput(f"Another plan already has the code {plan.code!r}.")
    plan.save()
    if adding:
        audit.record(actor=actor, obj=plan, flag=audit.ADDITION, message=f"Created plan {plan.code}.")
    else:
        changed = [name.replace("_", " ") for name in PLAN_FIELDS if before.get(name) != getattr(plan, name)]
        if changed:
            audit.record(actor=actor, obj=plan, message=f"Changed {', '.join(changed)}.")
    plans_changed()
    logger.info("plan saved id=%s code=%s", plan.pk, plan.code)
    return plan


def set_plan(*, organization: Organization, plan: Plan | None, actor: Any = None) -> Organization:
    """Put an organization on a plan (None: the default plan, `HOTCROSS_DEFAULT_PLAN`). Idempotent."""
    with transaction.atomic():
        locked = lock_organization(organization)
        _write_plan(locked, plan, actor, source="")
    refresh_from(organization, locked)
    plans_changed()
    return organization


def apply_plan_code(locked: Organization, code: str, actor: Any = None) -> bool:
    """What a Stripe subscription's `hotcross_plan` metadata names, for a locked organization (inside the caller's
    transaction). An unknown code keeps the current plan: a warning in the log and a line in the organization's
    admin history. Returns whether the plan changed."""
    code = (code or "").strip()
    plan = Plan.objects.filter(code=code).first() if code else None
    if plan is None:
        logger.warning("stripe names an unknown plan organization=%s code=%r: plan kept", locked.pk, code[:64])
        audit.record(
            actor=actor,
            obj=locked,
            message=f"Stripe names the plan {code[:64]!r} (hotcross_plan metadata), which does not exist: the plan "
            "is unchanged. Create that plan or fix the price's or product's metadata.",
        )
        return False
    return _write_plan(locked, plan, actor, source=" (from Stripe)")


def plans_changed() -> None:
    """Forget this process's plan table and key checks now, and again once the transaction commits."""
    plans.forget_table()
    check_cache.clear()
    transaction.on_commit(plans.forget_table)
    transaction.on_commit(check_cache.clear)


def _write_plan(locked: Organization, plan: Plan | None, actor: Any, *, source: str) -> bool:
    if locked.plan_id == (plan.pk if plan is not None else None):
        return False
    old = locked.plan.code if locked.plan_id is not None else "default"
    locked.plan = plan
    locked.save(update_fields=["plan", "updated_at"])
    new = plan.code if plan is not None else "default"
    audit.record(actor=actor, obj=locked, message=f"Plan: {old} → {new}{source}.")
    logger.info("organization plan set id=%s plan=%s", locked.pk, new)
    return True
