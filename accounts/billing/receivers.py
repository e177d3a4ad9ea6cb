"""dj-stripe's webhook signals → `accounts.billing.sync`. Connected by `AccountsConfig.ready()` (`connect()`).

`webhook_pre_process` (a verified event, before dj-stripe fetches anything): take the customer's turn
(`sync.customer_turn`). `webhook_post_process` (after
dj-stripe synced the event's objects, whatever the order of `INSTALLED_APPS`): apply the synced subscription; for a
finished Checkout (`checkout.session.completed`), re-read the organization's subscriptions from Stripe
(`checkout.complete_checkout`: the same as the sign-up's success page, idempotent in any order).
"""

from __future__ import annotations

import logging
from typing import Any

from djstripe import signals as djstripe_signals
from djstripe.models import Subscription, WebhookEventTrigger

from accounts.billing.checkout import complete_checkout
from accounts.billing.config import StripeUnavailable
from accounts.billing.sync import apply_subscription, customer_turn
from accounts.exceptions import InvalidInput

logger = logging.getLogger(__name__)

# The webhook events that can change a subscription's status, items or quantities.
SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
    "customer.subscription.trial_will_end",
)

CHECKOUT_COMPLETED = "checkout.session.completed"
# What a webhook endpoint subscribes to: the subscription events and a finished self-service Checkout.
ENDPOINT_EVENTS = (*SUBSCRIPTION_EVENTS, CHECKOUT_COMPLETED)


def connect() -> None:
    djstripe_signals.webhook_pre_process.connect(
        take_customer_turn, sender=WebhookEventTrigger, dispatch_uid="accounts.billing.take_customer_turn"
    )
    djstripe_signals.webhook_post_process.connect(
        apply_synced_subscription, sender=WebhookEventTrigger, dispatch_uid="accounts.billing.apply_subscription"
    )


def take_customer_turn(sender: Any, instance: WebhookEventTrigger, **kwargs: Any) -> None:
    """A subscription event's customer takes its turn before dj-stripe fetches (see `sync.customer_turn`). The body
    is only signed, not well-formed: any shape is looked at without failing."""
    customer_id = _customer_of(instance.json_body)
    if customer_id:
        customer_turn(customer_id)


def apply_synced_subscription(sender: Any, instance: WebhookEventTrigger, **kwargs: Any) -> None:
    """After dj-stripe synced a subscription event's objects from the API: apply that synced copy."""
    event = instance.event
    if event is None:
        return
    if event.type == CHECKOUT_COMPLETED:
        _complete_checkout(event)
        return
    if event.type not in SUBSCRIPTION_EVENTS:
        return
    data = event.data if isinstance(event.data, dict) else {}
    obj = data.get("object")
    subscription_id = obj.get("id") if isinstance(obj, dict) else None
    subscription = Subscription.objects.filter(id=subscription_id).first() if isinstance(subscription_id, str) else None
    if subscription is None:
        # dj-stripe skips objects Stripe no longer has; there is nothing current to apply.
        logger.warning(
            "stripe event %s (%s): subscription %s not synced, ignored", event.id, event.type, subscription_id
        )
        return
    apply_subscription(subscription)


def _complete_checkout(event: Any) -> None:
    """A finished Checkout: the organization it names takes Stripe's current state. A session that is not ours, or a
    Stripe that does not answer now, is logged and left: the subscription's own events and the success page do the
    same work."""
    data = event.data if isinstance(event.data, dict) else {}
    obj = data.get("object")
    session_id = obj.get("id") if isinstance(obj, dict) else None
    try:
        organization = complete_checkout(session_id)
    except (InvalidInput, StripeUnavailable) as exc:
        logger.warning("stripe event %s (%s): checkout session not applied: %s", event.id, event.type, exc)
        return
    if organization is None:
        logger.warning("stripe event %s (%s): session %s is not one of ours, ignored", event.id, event.type, session_id)


def _customer_of(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("type") not in ENDPOINT_EVENTS:
        return None
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    customer_id = obj.get("customer") if isinstance(obj, dict) else None
    return customer_id if isinstance(customer_id, str) and customer_id else None
