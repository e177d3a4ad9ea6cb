"""System checks of the accounts app (registered in `AccountsConfig.ready()`): a `HOTCROSS_DEFAULT_PLAN` that names
no plan is reported by `manage.py check`. The Stripe keys' checks are `accounts.billing.checks`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


def check_default_plan(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """`HOTCROSS_DEFAULT_PLAN` must name a plan: otherwise organizations without one run with no plan (no limits)."""
    from django.db import DatabaseError

    from accounts.models import Plan

    code = str(getattr(settings, "HOTCROSS_DEFAULT_PLAN", "") or "")
    if not code:
        return []
    try:
        exists = Plan.objects.filter(code=code).exists()
    except (DatabaseError, AssertionError, RuntimeError):  # not migrated, no database, or none allowed (tests)
        return []
    if exists:
        return []
    return [
        checks.Warning(
            f"HOTCROSS_DEFAULT_PLAN is {code!r} but no plan has that code: organizations without a plan of their own "
            "get every tool with no limit.",
            hint="Create the plan in the admin (Plans), or fix the setting.",
            id="accounts.W102",
        )
    ]


def register() -> None:
    checks.register(check_default_plan)
