"""How the back office shows things: status and key-state badges, links to Stripe's dashboard and dj-stripe's pages."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from accounts.models import SubscriptionStatus

_BADGE_CLASS = {
    SubscriptionStatus.ACTIVE: "ok",
    SubscriptionStatus.TRIALING: "info",
    SubscriptionStatus.PAST_DUE: "warn",
    SubscriptionStatus.INCOMPLETE: "warn",
    SubscriptionStatus.UNPAID: "bad",
    SubscriptionStatus.PAUSED: "bad",
    SubscriptionStatus.CANCELED: "off",
    SubscriptionStatus.INCOMPLETE_EXPIRED: "off",
}
# Key states (`Developer.key_state`) and invitation states (`Invitation.state`).
_STATE_CLASS = {
    "active": "ok",
    "revoked": "bad",
    "expired": "warn",
    "inactive": "off",
    "no key": "off",
    "pending": "info",
    "accepted": "ok",
}


def status_badge(status: str, label: str) -> str:
    return format_html(
        '<span class="hc-badge hc-{}" data-status="{}">{}</span>', _BADGE_CLASS.get(status, "off"), status, label
    )


def state_badge(state: str) -> str:
    return format_html('<span class="hc-badge hc-{}">{}</span>', _STATE_CLASS.get(state, "off"), state)


def organization_link(organization_id: object, name: str) -> str:
    """The organization's name, linked to its admin page (list columns of what belongs to one)."""
    url = reverse("admin:accounts_organization_change", args=[organization_id])
    return format_html('<a href="{}">{}</a>', url, name)


def stripe_dashboard_url(customer_id: str) -> str:
    """The customer's page in Stripe's dashboard (test-mode path unless STRIPE_LIVE_MODE)."""
    mode = "" if getattr(settings, "STRIPE_LIVE_MODE", False) else "test/"
    return f"https://dashboard.stripe.com/{mode}customers/{quote(customer_id, safe='')}"


def djstripe_list_url(model: str, stripe_id: str) -> str | None:
    """dj-stripe's admin list filtered on one Stripe id, when dj-stripe's admin is there."""
    try:
        url = reverse(f"admin:djstripe_{model}_changelist")
    except NoReverseMatch:
        return None
    return f"{url}?{urlencode({'id': stripe_id})}"
