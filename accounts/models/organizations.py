"""Organizations (the paying entity, one Stripe customer) and their developers (one current key each, a seat
each), with the keys a rotation replaced. The seat rule (`SEAT_HOLDER`, the querysets) is here once."""

from __future__ import annotations

import datetime
import uuid

from django.db import models
from django.db.models import BooleanField, Count, ExpressionWrapper, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from accounts.choices import PricingModel, Role, SubscriptionStatus
from accounts.models.plans import Plan


class OrganizationQuerySet(models.QuerySet):
    def with_seats(self) -> OrganizationQuerySet:
        """Annotated with `seats_used`, `developer_count` and `over_seat_limit` (seats used > `max_seats`): one
        query."""
        return self.annotate(
            seats_used=_count_per_organization(Developer.objects.seat_holders()),
            developer_count=_count_per_organization(Developer.objects.all()),
        ).annotate(over_seat_limit=ExpressionWrapper(Q(seats_used__gt=F("max_seats")), output_field=BooleanField()))

    def over_seat_limit(self) -> OrganizationQuerySet:
        """Those with more seat holders than seats: `with_seats().filter(over_seat_limit=True)`, but worked out in one
        grouped pass over the seat holders' index, which is much cheaper when filtering every organization."""
        max_seats = Organization.objects.filter(pk=OuterRef("organization_id")).order_by().values("max_seats")
        over = (
            Developer.objects.seat_holders()
            .order_by()
            .values("organization_id")
            .annotate(n=Count("pk"))
            .filter(n__gt=Subquery(max_seats, output_field=IntegerField()))
            .values("organization_id")
        )
        return self.filter(pk__in=over)


def _count_per_organization(developers: models.QuerySet) -> Coalesce:
    """How many of `developers` belong to the outer query's organization (0 when none)."""
    counted = (
        developers.filter(organization=OuterRef("pk")).order_by().values("organization").annotate(n=Count("pk"))
    ).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Unbounded (PostgreSQL and SQLite allow it): the legacy `customers.company` was unbounded TEXT, and a limit here
    # was only our choice.
    name = models.CharField()
    stripe_customer_id = models.CharField(
        "Stripe customer id",
        max_length=255,
        null=True,
        blank=True,
        unique=True,
        help_text="cus_… — empty until the organization has a Stripe customer.",
    )
    billing_email = models.EmailField(blank=True, help_text="Where Stripe sends invoices.")
    subscription_id = models.CharField("Stripe subscription id", max_length=255, blank=True, default="")
    subscription_status = models.CharField(
        max_length=32, choices=SubscriptionStatus.choices, default=SubscriptionStatus.INCOMPLETE
    )
    max_seats = models.PositiveIntegerField(default=1)
    pricing_model = models.CharField(max_length=32, choices=PricingModel.choices, default=PricingModel.PER_ORGANIZATION)
    plan = models.ForeignKey(
        Plan,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="organizations",
        help_text="Empty: the plan every organization without one of its own is on.",
    )
    # The legacy `customers` row this organization was converted from (see the legacy conversion migration).
    legacy_customer_id = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(subscription_status__in=SubscriptionStatus.values),
                name="organization_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(pricing_model__in=PricingModel.values),
                name="organization_pricing_model_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["subscription_status"], name="organization_status_idx"),
            models.Index(fields=["created_at"], name="organization_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def email(self) -> str:
        """The billing address (dj-stripe's subscriber model needs an `email`)."""
        return self.billing_email


# Who holds a seat: an active developer with a key that is not revoked.
SEAT_HOLDER = Q(is_active=True, api_key_revoked_at__isnull=True, api_key_hash__isnull=False)


class DeveloperQuerySet(models.QuerySet):
    """The seat rule, once. Seat holders are ordered by when they took their seat (`seat_claimed_at`, then id); after
    a downgrade the first `max_seats` of them keep access and the others are beyond the seat limit."""

    def seat_holders(self) -> DeveloperQuerySet:
        return self.filter(SEAT_HOLDER)

    def in_seat_order(self) -> DeveloperQuerySet:
        return self.order_by("seat_claimed_at", "id")

    def with_seat_rank(self) -> DeveloperQuerySet:
        """Annotated with `seats_ahead` (how many seat holders of the organization took their seat before this
        developer) and `beyond_seat_limit` (a seat holder with `seats_ahead >= max_seats`: refused by the key check).
        """
        ahead = (
            Developer.objects.seat_holders()
            .filter(organization=OuterRef("organization"))
            .filter(
                Q(seat_claimed_at__lt=OuterRef("seat_claimed_at"))
                | Q(seat_claimed_at=OuterRef("seat_claimed_at"), id__lt=OuterRef("id"))
            )
            .order_by()
            .values("organization")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return self.annotate(seats_ahead=Coalesce(Subquery(ahead, output_field=IntegerField()), Value(0))).annotate(
            beyond_seat_limit=ExpressionWrapper(
                SEAT_HOLDER & Q(seats_ahead__gte=F("organization__max_seats")), output_field=BooleanField()
            )
        )

    def beyond_seat_limit(self) -> DeveloperQuerySet:
        """The seat holders the key check refuses with `seat_limit_exceeded`, in seat order."""
        return self.with_seat_rank().filter(beyond_seat_limit=True).in_seat_order()

    def with_old_key_grace(self, now: datetime.datetime | None = None) -> DeveloperQuerySet:
        """Annotated with `old_key_works_until`: when the key replaced by a rotation with a grace period stops working
        (None when no old key is in its grace period). One subquery."""
        in_grace = (
            ReplacedKey.objects.filter(developer=OuterRef("pk"), grace_until__gt=now or timezone.now())
            .order_by("-grace_until")
            .values("grace_until")[:1]
        )
        return self.annotate(old_key_works_until=Subquery(in_grace))


class Developer(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="developers")
    email = models.EmailField(max_length=254)
    first_name = models.CharField(blank=True)  # unbounded, as the legacy columns were (see Organization.name)
    last_name = models.CharField(blank=True)
    api_key_hash = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    # Labels say "key": a developer has one key, and "API key created at" is longer than it needs to be.
    api_key_prefix = models.CharField("key prefix", blank=True, editable=False)  # legacy prefixes are kept verbatim
    api_key_created_at = models.DateTimeField("key created", null=True, blank=True, editable=False)
    api_key_revoked_at = models.DateTimeField("key revoked", null=True, blank=True, editable=False)
    api_key_last_used_at = models.DateTimeField("key last used", null=True, blank=True, editable=False)
    api_key_expires_at = models.DateTimeField("key expires", null=True, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    # Owners and admins manage the organization on /org/; whether they hold a seat is theirs to choose (a key in use).
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    # When the developer last took a seat (added, reactivated, re-keyed after a revocation). After a downgrade the
    # earliest seat holders keep access, so this, not created_at, orders them.
    seat_claimed_at = models.DateTimeField(default=timezone.now, editable=False)
    legacy_customer_id = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DeveloperQuerySet.as_manager()

    class Meta:
        ordering = ["email"]
        # Key actions get their own permissions so a support role can revoke keys without changing anything else.
        permissions = [
            ("revoke_key", "Can revoke developer API keys"),
            ("rotate_key", "Can rotate developer API keys"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="developer_role_valid"),
            models.UniqueConstraint(
                Lower("email"),
                name="developer_email_ci_unique",
                violation_error_message="A developer with this email already exists.",
            ),
        ]
        indexes = [
            # Seat rank of a developer in its organization (key check, seats_in_use).
            models.Index(
                fields=["organization", "seat_claimed_at", "id"],
                condition=models.Q(is_active=True, api_key_revoked_at__isnull=True, api_key_hash__isnull=False),
                name="developer_seat_holder_idx",
            ),
            models.Index(fields=["api_key_prefix"], name="developer_key_prefix_idx"),
            # The organization's members page lists them by email (500 members: one index range).
            models.Index(fields=["organization", "email"], name="developer_org_email_idx"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def manages(self) -> bool:
        """Owner or admin: may manage the organization's members, invitations and keys on /org/."""
        return self.role in (Role.OWNER, Role.ADMIN)

    @property
    def holds_seat(self) -> bool:
        """`SEAT_HOLDER` for one loaded developer."""
        return self.is_active and self.api_key_revoked_at is None and self.api_key_hash is not None

    @property
    def seat_rank(self) -> int | None:
        """1 for the earliest seat holder of the organization; None without a seat (needs `with_seat_rank()`)."""
        return self.seats_ahead + 1 if self.holds_seat else None

    @property
    def key_version(self) -> str:
        """Names the current key without revealing it: changes whenever a key is issued (see `rotate_key`)."""
        return self.api_key_created_at.isoformat() if self.api_key_created_at else "none"

    @property
    def key_state(self) -> str:
        """One word for lists: active, revoked, expired, inactive, no key."""
        if not self.is_active:
            return "inactive"
        if self.api_key_hash is None:
            return "no key"
        if self.api_key_revoked_at is not None:
            return "revoked"
        if self.api_key_expires_at is not None and self.api_key_expires_at <= timezone.now():
            return "expired"
        return "active"


class ReplacedKey(models.Model):
    """A key a rotation replaced: its SHA-256 hash (never the key), so that the key check can tell someone presenting
    it what happened (`key_rotated`, or `key_revoked` when it had been revoked) instead of "not valid".

    `grace_until`: a rotation with a grace period lets the old key keep working until then (the developer's one seat
    covers both keys). Revoking the developer's key, deactivating the developer or rotating again ends it at once
    (`accounts.services.developers`).
    """

    id = models.BigAutoField(primary_key=True)
    developer = models.ForeignKey(Developer, on_delete=models.CASCADE, related_name="replaced_keys")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    key_prefix = models.CharField(blank=True, editable=False)
    replaced_at = models.DateTimeField(default=timezone.now, editable=False)
    # Set when the key had been revoked before it was replaced: it keeps answering `key_revoked`.
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    grace_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        # A developer has few replaced keys: the foreign key's index serves every per-developer read.
        ordering = ["-replaced_at", "-id"]

    def __str__(self) -> str:
        return f"{self.key_prefix}… replaced {self.replaced_at:%Y-%m-%d %H:%M}"
