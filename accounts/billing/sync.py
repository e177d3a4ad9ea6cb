"""A synced Stripe subscription → its organization: status, subscription id, seats, pricing model and plan.

Reads dj-stripe's synced copies (re-fetched from the API), never an event body: events arrive twice, late and out of
order, and the organization must end in Stripe's *current* state. The organization is found by its Stripe customer id
(dj-stripe leaves `Customer.subscriber` empty for customers made outside this app). When a customer has several
subscriptions, the one in best standing decides (`STATUS_STANDING`). The write is one service call under one row
lock (`services.apply_subscription_state`), so the seat rules and the admin history are the same as for staff.

Ordering: the work for one customer (fetching from Stripe, then applying) takes turns on a per-customer lock
(`customer_turn`), so two concurrent deliveries cannot fetch in one order and write in the other. That lock is not the
organization's row: staff changes to the organization never wait for Stripe.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import stripe
from django.db import connection, transaction
from djstripe.models import Subscription

from accounts import services
from accounts.billing.config import StripeUnavailable, describe_error, secret_key
from accounts.billing.prices import PriceMetadataError, plan_code, seat_plan
from accounts.choices import SubscriptionStatus, status_rank
from accounts.exceptions import InvalidInput
from accounts.models import Organization, Plan

logger = logging.getLogger(__name__)

# The first key of PostgreSQL's two-key advisory locks that stand for "a Stripe customer's turn".
_CUSTOMER_LOCK_SPACE = 0x48435354  # "HCST"


@dataclass(frozen=True, slots=True)
class Applied:
    """What a subscription did to its organization. `problem` says why something was left as it was."""

    organization: Organization
    subscription_id: str
    status: str
    seats: int | None
    problem: str = ""


def customer_turn(customer_id: str) -> None:
    """Wait for, then hold until the transaction ends, the turn of this Stripe customer (PostgreSQL; elsewhere the
    database's single writer already takes turns)."""
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=4).digest(), "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_CUSTOMER_LOCK_SPACE, key])


def apply_subscription(subscription: Subscription, *, actor: Any = None) -> Applied | None:
    """Bring the organization of this synced subscription's customer in line with Stripe. Idempotent.

    The customer's subscription in best standing decides, so the result does not depend on which subscription's event
    came last. Returns None when no organization has the customer id (logged; nothing is written).
    """
    customer_id = subscription.customer_id
    deciding = best_standing(Subscription.objects.filter(customer_id=customer_id)) or subscription
    problems = []
    status = deciding.status or ""
    if status not in SubscriptionStatus.values:
        problems.append(f"Stripe status {status!r} is unknown here; the status was left as it was.")
        status = None
    try:
        plan = seat_plan((deciding.stripe_data.get("items") or {}).get("data") or [])
    except PriceMetadataError as exc:
        problems.append(f"{exc.message} The seats were left as they were.")
        plan = None
    items = (deciding.stripe_data.get("items") or {}).get("data") or []
    try:
        named_plan = plan_code(items)  # issue 16: the plan named in the price's (else product's) metadata
    except PriceMetadataError as exc:
        problems.append(f"{exc.message} The plan was left as it was.")
        named_plan = None
    if named_plan is not None and not Plan.objects.filter(code=named_plan).exists():
        problems.append(f"No plan has the code {named_plan[:64]!r} (hotcross_plan); the plan was left as it was.")
    organization = services.apply_subscription_state(
        stripe_customer_id=customer_id,
        status=status,
        subscription_id=deciding.id,
        seats=plan.seats if plan else None,
        pricing_model=plan.pricing_model if plan else None,
        plan_code=named_plan,
        actor=actor,
    )
    if organization is None:
        logger.warning(
            "stripe subscription %s belongs to customer %s, which no organization has: ignored",
            subscription.id,
            customer_id,
        )
        return None
    for problem in problems:
        logger.error(
            "stripe subscription %s of organization %s not fully applied: %s", deciding.id, organization.pk, problem
        )
    return Applied(
        organization=organization,
        subscription_id=deciding.id,
        status=organization.subscription_status,
        seats=plan.seats if plan else None,
        problem=" ".join(problems),
    )


def best_standing(subscriptions: Iterable[Subscription]) -> Subscription | None:
    """The subscription whose status ranks best in `STATUS_STANDING`; the newest wins a tie."""

    def key(sub: Subscription) -> tuple[int, float, str]:
        created = sub.created.timestamp() if sub.created else 0.0
        return (status_rank(sub.status), -created, sub.id)

    return min(subscriptions, key=key, default=None)


def sync_from_stripe(organization: Organization, *, actor: Any = None) -> Applied:
    """Re-fetch the organization's subscriptions from the Stripe API and re-apply them (for missed webhooks)."""
    customer_id = organization.stripe_customer_id
    if not customer_id:
        raise InvalidInput(f"{organization.name} has no Stripe customer id, so there is nothing to sync.")
    api_key = secret_key()
    try:
        with transaction.atomic():
            customer_turn(customer_id)  # as a webhook for this customer would: fetch and apply in turn
            # dj-stripe lists every status (`status=all`); Stripe's default would leave canceled ones out.
            synced = [
                Subscription.sync_from_stripe_data(data, api_key=api_key)
                for data in Subscription.api_list(customer=customer_id, api_key=api_key)
            ]
            deciding = best_standing(synced)
            applied = apply_subscription(deciding, actor=actor) if deciding is not None else None
    except stripe.StripeError as exc:
        raise StripeUnavailable(
            f"Stripe did not answer for {organization.name} (customer {customer_id}): {describe_error(exc)}"
        ) from None
    if deciding is None:
        organization.refresh_from_db()
        return Applied(
            organization=organization,
            subscription_id=organization.subscription_id,
            status=organization.subscription_status,
            seats=None,
            problem=f"Stripe has no subscription for customer {customer_id}; nothing was changed.",
        )
    if applied is None:
        raise InvalidInput(f"No organization has the Stripe customer id {customer_id} any more.")
    return applied
