"""The Stripe side of the configuration: which API key is in use, what is wrong with it (naming the setting, never
the value), and how long a call to Stripe may take.

A key is judged by dj-stripe's own parser (`get_api_key_details_by_prefix`): it must be a secret (`sk_`) or
restricted (`rk_`) key of the mode its setting is for. The HTTP client gets a short timeout and few retries
(`STRIPE_TIMEOUT_SECONDS`, `STRIPE_MAX_NETWORK_RETRIES`): Stripe's library defaults (80 s, 2 retries) would let one
slow answer hold a webhook, and everything waiting behind it, for minutes.
"""

from __future__ import annotations

import stripe
from django.conf import settings
from djstripe.enums import APIKeyType
from djstripe.exceptions import InvalidStripeAPIKey
from djstripe.models.api import get_api_key_details_by_prefix
from djstripe.settings import djstripe_settings

from accounts.exceptions import AccountsError

KEY_SETTINGS = {False: "STRIPE_TEST_SECRET_KEY", True: "STRIPE_LIVE_SECRET_KEY"}


class StripeUnavailable(AccountsError):
    """Stripe could not be asked (no key configured, network, authentication, unknown customer)."""

    code = "stripe_unavailable"


def configure_client() -> None:
    """Give the Stripe library the timeout and retries of the settings (once, at start-up)."""
    stripe.default_http_client = stripe.new_default_http_client(timeout=float(settings.STRIPE_TIMEOUT_SECONDS))
    stripe.max_network_retries = int(settings.STRIPE_MAX_NETWORK_RETRIES)


def live_mode() -> bool:
    return bool(djstripe_settings.STRIPE_LIVE_MODE)


def key_setting(live: bool | None = None) -> str:
    """The name of the setting that holds the key of this mode (default: `STRIPE_LIVE_MODE`'s)."""
    return KEY_SETTINGS[live_mode() if live is None else live]


def malformed_key_settings() -> list[str]:
    """The key settings that are set but do not hold a secret key of their mode."""
    return [name for live, name in KEY_SETTINGS.items() if getattr(settings, name, "") and not _usable(name, live)]


def key_problem(live: bool | None = None) -> str:
    """What is wrong with the key of this mode, naming the setting, never the value; "" when it is usable."""
    live = live_mode() if live is None else live
    name = key_setting(live)
    if not getattr(settings, name, ""):
        return f"No Stripe API key configured: set {name}."
    if not _usable(name, live):
        mode = "live" if live else "test"
        return f"{name} is not a Stripe {mode}-mode secret key (sk_{mode}_… or rk_{mode}_…); its value is not shown."
    return ""


def secret_key() -> str:
    """The key of the current mode; `StripeUnavailable` (naming the setting) when it is missing or unusable."""
    problem = key_problem()
    if problem:
        raise StripeUnavailable(problem)
    return djstripe_settings.STRIPE_SECRET_KEY


def describe_error(exc: stripe.StripeError) -> str:
    """A Stripe error in words, without anything secret."""
    if isinstance(exc, stripe.APIConnectionError):
        return f"could not connect to {stripe.api_base}."
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return f"the API key was refused (check {key_setting()})."
    return exc.user_message or exc.__class__.__name__


def _usable(name: str, live: bool) -> bool:
    try:
        key_type, key_live = get_api_key_details_by_prefix(getattr(settings, name, ""))
    except InvalidStripeAPIKey:
        return False
    return key_type in (APIKeyType.secret, APIKeyType.restricted) and key_live == live
