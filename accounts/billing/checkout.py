"""Self-service billing with Stripe (issue 30): the organization's Stripe customer, a Checkout Session that sells its
seats, the Billing Portal, and a finished Checkout brought home.

Rules:
- The Stripe customer is made (once: an idempotency key per organization) and linked to the organization *before*
  Checkout, so the subscription's webhooks find the organization by customer id whatever order they arrive in.
- Checkout sells the plan's seat price in subscription mode; the quantity is the seats chosen, adjustable on Stripe's
  page within the plan's sign-up bounds (`services.signup_seat_bounds`).
- A finished Checkout (`checkout.session.completed`, or the browser back on the success page) only re-reads Stripe's
  current state for the organization (`sync.sync_from_stripe`): idempotent, safe twice and in any order with the
  subscription webhooks. A session whose customer is not the organization it names is ignored.
- Stripe is called outside any transaction that holds a row lock; a Stripe that does not answer is
  `StripeUnavailable` (in words, never the key), for the page to say "try again".
"""

from __future__ import annotations

import logging
import re
from typing import Any

import stripe

from accounts import services
from accounts.billing.config import StripeUnavailable, describe_error, secret_key
from accounts.billing.sync import sync_from_stripe
from accounts.exceptions import InvalidInput
from accounts.models import Organization

logger = logging.getLogger(__name__)

METADATA_KEY = "hotcross_organization"
_SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")


def _unavailable(what: str, exc: stripe.StripeError) -> StripeUnavailable:
    logger.warning("stripe call failed (%s): %s", what, describe_error(exc))
    return StripeUnavailable(f"Stripe did not answer ({describe_error(exc)}). Try again in a moment.")


def ensure_customer(organization: Organization) -> str:
    """The organization's Stripe customer id, made and linked first when it has none. Two calls at once (or a retry
    after a lost answer) make one customer: Stripe answers the same idempotency key with the same customer."""
    current = Organization.objects.filter(pk=organization.pk).values_list("stripe_customer_id", flat=True).first()
    if current:
        organization.stripe_customer_id = current
        return current
    api_key = secret_key()
    try:
        customer = stripe.Customer.create(
            api_key=api_key,
            idempotency_key=f"hotcross-customer-{organization.pk}",
            email=organization.billing_email or None,
            metadata={METADATA_KEY: str(organization.pk)},
        )
    except stripe.StripeError as exc:
        raise _unavailable("customer", exc) from None
    fresh = Organization.objects.get(pk=organization.pk)
    if not fresh.stripe_customer_id:
        services.update_organization(organization=fresh, stripe_customer_id=customer.id)
    organization.stripe_customer_id = fresh.stripe_customer_id
    logger.info("stripe customer linked organization=%s customer=%s", organization.pk, fresh.stripe_customer_id)
    return fresh.stripe_customer_id


def create_checkout(organization: Organization, *, success_url: str, cancel_url: str) -> str:
    """A Checkout Session (subscription mode) for the organization's plan and seats; returns the page's URL.
    `success_url` may hold `{CHECKOUT_SESSION_ID}` (Stripe replaces it)."""
    plan = organization.plan
    if plan is None or not plan.stripe_price_id:
        raise InvalidInput("Choose a plan offered at sign-up first.")
    low, high = services.signup_seat_bounds(plan)
    seats = min(max(organization.max_seats, low), high)
    customer_id = ensure_customer(organization)
    api_key = secret_key()
    metadata = {METADATA_KEY: str(organization.pk), "hotcross_plan": plan.code}
    try:
        session = stripe.checkout.Session.create(
            api_key=api_key,
            mode="subscription",
            customer=customer_id,
            client_reference_id=str(organization.pk),
            line_items=[
                {
                    "price": plan.stripe_price_id,
                    "quantity": seats,
                    "adjustable_quantity": {"enabled": True, "minimum": low, "maximum": high},
                }
            ],
            metadata=metadata,
            subscription_data={"metadata": metadata},
            success_url=success_url,
            cancel_url=cancel_url,
        )
    except stripe.StripeError as exc:
        raise _unavailable("checkout", exc) from None
    logger.info("stripe checkout started organization=%s session=%s seats=%s", organization.pk, session.id, seats)
    return str(session.url)


def portal_url(organization: Organization, *, return_url: str) -> str:
    """A Stripe Billing Portal session for the organization's customer (seats, payment method, invoices, cancel)."""
    if not organization.stripe_customer_id:
        raise InvalidInput(f"{organization.name} has no Stripe customer yet: finish the sign-up's payment first.")
    api_key = secret_key()
    try:
        session = stripe.billing_portal.Session.create(
            api_key=api_key, customer=organization.stripe_customer_id, return_url=return_url
        )
    except stripe.StripeError as exc:
        raise _unavailable("billing portal", exc) from None
    return str(session.url)


def complete_checkout(session_id: str, *, of: Organization | None = None) -> Organization | None:
    """Bring home a finished Checkout: read the session from Stripe, and when its customer is the organization it
    names (ours), re-apply Stripe's current subscriptions to it. Returns that organization (None for a session that
    is not ours, or not finished: nothing written). Idempotent: twice, or before or after the webhooks, the same.
    With `of` (the success page's signed-in owner's organization), a session of any other organization is None too:
    nothing written."""
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise InvalidInput("That is not a Stripe Checkout session id.")
    api_key = secret_key()
    try:
        session = stripe.checkout.Session.retrieve(session_id, api_key=api_key).to_dict()
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            raise InvalidInput("Stripe knows no such Checkout session.") from None
        raise _unavailable("checkout session", exc) from None
    except stripe.StripeError as exc:
        raise _unavailable("checkout session", exc) from None
    organization = _organization_of(session)
    if organization is None:
        logger.warning("stripe checkout session %s is not one of ours: ignored", session_id)
        return None
    if of is not None and organization.pk != of.pk:
        logger.warning("stripe checkout session %s is another organization's than the owner's: ignored", session_id)
        return None
    if session.get("status") != "complete":
        return organization
    sync_from_stripe(organization)
    organization.refresh_from_db()
    return organization


def _organization_of(session: dict[str, Any]) -> Organization | None:
    customer = session.get("customer")
    customer_id = customer.get("id") if isinstance(customer, dict) else customer
    reference = session.get("client_reference_id") or (session.get("metadata") or {}).get(METADATA_KEY)
    if not isinstance(customer_id, str) or not customer_id or not isinstance(reference, str):
        return None
    organization = Organization.objects.filter(stripe_customer_id=customer_id).first()
    if organization is None or str(organization.pk) != reference:
        return None
    return organization
