"""System checks of the Stripe configuration (registered in `AccountsConfig.ready()`): a key that would fail webhooks
or `orgs sync-stripe` is reported by `manage.py check`, not by the first delivery."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from accounts.billing.config import key_setting, live_mode, malformed_key_settings


def check_stripe_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A key that is set must be usable: otherwise every webhook fails and Stripe retries for days."""
    return [
        checks.Error(
            f"{name} is set but is not a Stripe {name.split('_')[1].lower()}-mode secret key; its value is not shown.",
            hint="Copy the secret key (sk_… or a restricted rk_… key) of the right mode from the Stripe dashboard.",
            id="accounts.E101",
        )
        for name in malformed_key_settings()
    ]


def check_stripe_key_for_the_mode(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    name = key_setting()
    if getattr(settings, name, ""):
        return []
    return [
        checks.Warning(
            f"{name} is empty (STRIPE_LIVE_MODE is {live_mode()}): Stripe webhooks will fail and `orgs sync-stripe` "
            "will refuse until it is set.",
            hint=f"Set {name} in the environment.",
            id="accounts.W101",
        )
    ]


def register() -> None:
    checks.register(check_stripe_keys)
    checks.register(check_stripe_key_for_the_mode, deploy=True)
