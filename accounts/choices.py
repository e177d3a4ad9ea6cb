"""The domain's enumerations and limits, without any model: Stripe's subscription statuses and their standing, pricing
models, and the most seats an organization can have. Migrations import these (never today's models)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models


class SubscriptionStatus(models.TextChoices):
    """Stripe's subscription statuses, verbatim."""

    INCOMPLETE = "incomplete", "Incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete (expired)"
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
    UNPAID = "unpaid", "Unpaid"
    PAUSED = "paused", "Paused"


# Best standing first: when several subscriptions (or merged legacy customers) disagree, the first one wins.
STATUS_STANDING = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.PAST_DUE,
    SubscriptionStatus.UNPAID,
    SubscriptionStatus.PAUSED,
    SubscriptionStatus.INCOMPLETE,
    SubscriptionStatus.CANCELED,
    SubscriptionStatus.INCOMPLETE_EXPIRED,
)


# The most seats an organization can have: the ceiling of a PositiveIntegerField on every database.
MAX_SEATS = 2**31 - 1


class PricingModel(models.TextChoices):
    PER_ORGANIZATION = "per_organization", "Per organization (seats)"
    PER_DEVELOPER = "per_developer", "Per developer"
    HYBRID = "hybrid", "Hybrid (base + per seat)"


class AtCap(models.TextChoices):
    """What a plan does once an organization has made its monthly calls (per seat × seats)."""

    REFUSE = "refuse", "Refuse further calls (monthly_cap_reached)"
    OVERAGE = "overage", "Allow, and bill the overage"


class MeteredBilling(models.TextChoices):
    """Which calls a plan reports to Stripe as meter events."""

    NONE = "none", "None (flat or per-seat price only)"
    ALL_CALLS = "all_calls", "Every call (hybrid: base fee + usage)"
    OVERAGE = "overage", "Calls beyond the monthly cap"


def status_rank(status: str) -> int:
    """A status's place in `STATUS_STANDING` (0 is best); an unknown status ranks after every known one."""
    try:
        return STATUS_STANDING.index(status)
    except ValueError:
        return len(STATUS_STANDING)


def best_status(statuses: Iterable[str]) -> str | None:
    """The status in best standing among these (unknown ones ignored); None when none is known."""
    known = [status for status in statuses if status in STATUS_STANDING]
    return min(known, key=status_rank, default=None)


class Role(models.TextChoices):
    """A person's role in their organization. Owners and admins manage members, invitations and keys on `/org/`
    (owners also billing and roles); members are developers only. Any role may hold a seat: a seat is a key in use."""

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


MANAGING_ROLES = (Role.OWNER, Role.ADMIN)


class AlertKind(models.TextChoices):
    """The mails owners get about their organization (`accounts.alerts`)."""

    CAP_80 = "cap_80", "80 % of the monthly cap"
    CAP_100 = "cap_100", "the monthly cap reached"
    PAST_DUE = "past_due", "a payment failed (past due)"
    SEATS_SHORT = "seats_short", "members refused for lack of seats"
