"""Writes to organizations: create, describe, subscription status, seats, and a subscription's state from billing.

Lowering `max_seats` below the seats in use is allowed (a Stripe downgrade must apply): the earliest seat holders keep
access and the newest are refused by the key check (`DeveloperQuerySet.with_seat_rank`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from accounts import alerts, audit
from accounts.exceptions import InvalidInput
from accounts.models import MAX_SEATS, Organization, PricingModel, SubscriptionStatus
from accounts.selectors import seats_in_use
from accounts.services._base import (
    blank_to_none,
    keys_changed,
    lock_organization,
    refresh_from,
    save_unique,
    validate,
)
from accounts.services.plans import apply_plan_code, plans_changed
from accounts.wording import newest_refused

logger = logging.getLogger(__name__)

_UNSET: Any = object()
_DESCRIPTIVE = ("name", "stripe_customer_id", "billing_email", "pricing_model")


def create_organization(
    *,
    name: str,
    stripe_customer_id: str | None = None,
    max_seats: int = 1,
    subscription_status: str = SubscriptionStatus.INCOMPLETE,
    pricing_model: str = PricingModel.PER_ORGANIZATION,
    billing_email: str = "",
    actor: Any = None,
) -> Organization:
    organization = Organization(
        name=(name or "").strip(),
        stripe_customer_id=blank_to_none(stripe_customer_id),
        max_seats=valid_seats(max_seats),
        subscription_status=valid_status(subscription_status),
        pricing_model=pricing_model,
        billing_email=(billing_email or "").strip(),
    )
    validate(organization)
    save_unique(organization, field="stripe_customer_id", error=_require_unique_stripe_id(organization))
    audit.record(
        actor=actor,
        obj=organization,
        flag=audit.ADDITION,
        message=f"Created with status {organization.subscription_status} and {organization.max_seats} seat(s).",
    )
    logger.info("organization created id=%s", organization.pk)
    return organization


def update_organization(
    *,
    organization: Organization,
    name: str = _UNSET,
    stripe_customer_id: str | None = _UNSET,
    billing_email: str = _UNSET,
    pricing_model: str = _UNSET,
    actor: Any = None,
) -> Organization:
    """Change an organization's descriptive fields. Status and seats have their own services."""
    before = {field: getattr(organization, field) for field in _DESCRIPTIVE}
    if name is not _UNSET:
        organization.name = str(name).strip()
    if stripe_customer_id is not _UNSET:
        organization.stripe_customer_id = blank_to_none(stripe_customer_id)
    if billing_email is not _UNSET:
        organization.billing_email = str(billing_email).strip()
    if pricing_model is not _UNSET:
        organization.pricing_model = pricing_model
    validate(organization)
    save_unique(organization, field="stripe_customer_id", error=_require_unique_stripe_id(organization))
    changed = [field.replace("_", " ") for field, value in before.items() if getattr(organization, field) != value]
    if changed:
        audit.record(actor=actor, obj=organization, message=f"Changed {', '.join(changed)}.")
    keys_changed()
    return organization


def set_status(
    *, organization: Organization, status: str, subscription_id: str | None = None, actor: Any = None
) -> Organization:
    """Set the subscription status (Stripe's values). Key checks follow within a second. Idempotent."""
    status = valid_status(status)
    with transaction.atomic():
        locked = lock_organization(organization)
        _write_status(locked, status, subscription_id, actor)
    refresh_from(organization, locked)
    keys_changed()
    return organization


def set_seats(*, organization: Organization, max_seats: int, actor: Any = None) -> Organization:
    """Set the seat count. Below the seats in use is allowed: the newest extra holders lose access."""
    max_seats = valid_seats(max_seats)
    with transaction.atomic():
        locked = lock_organization(organization)
        _write_seats(locked, max_seats, actor)
    refresh_from(organization, locked)
    keys_changed()
    return organization


def apply_subscription_state(
    *,
    stripe_customer_id: str,
    status: str | None,
    subscription_id: str,
    seats: int | None,
    pricing_model: str | None,
    plan_code: str | None = None,
    actor: Any = None,
) -> Organization | None:
    """What a Stripe subscription says, written to the organization of that customer under one lock: the status (and
    subscription id), the seats, the pricing model and the plan (by code), each left as it is when None. Each change
    is one history entry, as if set one by one. Returns None when no organization has the customer id (nothing
    written)."""
    status = None if status is None else valid_status(status)
    seats = None if seats is None else valid_seats(seats)
    if pricing_model is not None and pricing_model not in PricingModel.values:
        raise InvalidInput(f"'{pricing_model}' is not a pricing model. Use one of: {', '.join(PricingModel.values)}.")
    with transaction.atomic():
        locked = Organization.objects.select_for_update().filter(stripe_customer_id=stripe_customer_id).first()
        if locked is None:
            return None
        if status is not None:
            _write_status(locked, status, subscription_id, actor)
        if seats is not None:
            _write_seats(locked, seats, actor)
        if pricing_model is not None and locked.pricing_model != pricing_model:
            locked.pricing_model = pricing_model
            locked.save(update_fields=["pricing_model", "updated_at"])
            audit.record(actor=actor, obj=locked, message="Changed pricing model.")
        if plan_code is not None:  # issue 16: an unknown code keeps the plan (logged, and in the history)
            apply_plan_code(locked, plan_code, actor)
    plans_changed()
    return locked


# --- rules ----------------------------------------------------------------------------------------------------------


def valid_status(status: str) -> str:
    """Stripe's status, trimmed and lower-cased; `InvalidInput` for anything else."""
    status = (status or "").strip().lower() if isinstance(status, str) else ""
    if status not in SubscriptionStatus.values:
        raise InvalidInput(
            f"'{status}' is not a subscription status. Use one of: {', '.join(SubscriptionStatus.values)}."
        )
    return status


def valid_seats(max_seats: int) -> int:
    """A seat count every database can hold: a whole number from 0 to `MAX_SEATS`."""
    if isinstance(max_seats, bool) or not isinstance(max_seats, int) or not 0 <= max_seats <= MAX_SEATS:
        raise InvalidInput(f"max seats: a whole number of 0 or more (at most {MAX_SEATS}), not {max_seats!r}.")
    return max_seats


def _write_status(locked: Organization, status: str, subscription_id: str | None, actor: Any) -> None:
    old_status, old_subscription = locked.subscription_status, locked.subscription_id
    locked.subscription_status = status
    if subscription_id is not None:
        locked.subscription_id = subscription_id
    if (old_status, old_subscription) == (locked.subscription_status, locked.subscription_id):
        return
    locked.save(update_fields=["subscription_status", "subscription_id", "updated_at"])
    message = f"Subscription status: {old_status} → {status}."
    if locked.subscription_id != old_subscription:
        message += f" Subscription: {old_subscription or '—'} → {locked.subscription_id or '—'}."
    audit.record(actor=actor, obj=locked, message=message)
    logger.info("organization status set id=%s status=%s", locked.pk, status)
    if status == SubscriptionStatus.PAST_DUE and old_status != SubscriptionStatus.PAST_DUE:
        alerts.past_due(locked)  # the owners are mailed once this commits (at most once a day)


def _write_seats(locked: Organization, max_seats: int, actor: Any) -> None:
    old_seats = locked.max_seats
    if old_seats == max_seats:
        return
    locked.max_seats = max_seats
    locked.save(update_fields=["max_seats", "updated_at"])
    used = seats_in_use(locked)
    message = f"Seats: {old_seats} → {max_seats}."
    if used > max_seats:
        message += f" {used} in use: {newest_refused(used, max_seats)}."
        logger.info("organization over seat limit id=%s seats_in_use=%s max_seats=%s", locked.pk, used, max_seats)
    audit.record(actor=actor, obj=locked, message=message)
    if max_seats < old_seats and used > max_seats:
        alerts.seats_short(locked, max_seats)  # the owners are told who is refused once this commits (once a day)


def _require_unique_stripe_id(organization: Organization) -> InvalidInput:
    """Raise when another organization has this Stripe customer id; return the error to use on a lost race."""
    error = InvalidInput(f"Another organization already has the Stripe customer id {organization.stripe_customer_id}.")
    if (
        organization.stripe_customer_id
        and Organization.objects.filter(stripe_customer_id=organization.stripe_customer_id)
        .exclude(pk=organization.pk)
        .exists()
    ):
        raise error
    return error
