"""Organizations (the paying entity, one Stripe customer), their developers (one current key each) and usage.

Fields, constraints, indexes and small derived properties only; every workflow lives in `services.py`.
"""

from __future__ import annotations

import datetime
import uuid

from django.db import models
from django.db.models import BooleanField, Count, ExpressionWrapper, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from accounts.choices import MAX_SEATS, STATUS_STANDING, AtCap, MeteredBilling, PricingModel, SubscriptionStatus

__all__ = [
    "MAX_SEATS",
    "STATUS_STANDING",
    "AtCap",
    "Developer",
    "LegacyCustomer",
    "MeteredBilling",
    "Organization",
    "Plan",
    "PricingModel",
    "ReplacedKey",
    "SubscriptionStatus",
    "UsageEvent",
    "UsageRollup",
]


class Plan(models.Model):
    """What a subscription allows (tools, rate limits, a monthly cap per seat) and what it bills by usage.

    An organization's plan is `Organization.plan`, or the plan whose code `HOTCROSS_DEFAULT_PLAN` names when that is
    empty. Organizations with a Stripe subscription get theirs from the price's or product's `hotcross_plan` metadata.
    Empty limits mean no limit."""

    id = models.BigAutoField(primary_key=True)
    code = models.SlugField(max_length=64, unique=True, help_text="Stripe metadata `hotcross_plan=<code>` names it.")
    name = models.CharField(max_length=200)
    allows_all_tools = models.BooleanField("every tool", default=True)
    allowed_tools = models.TextField(
        blank=True,
        default="",
        help_text="When not every tool: one tool name or pattern per line (`docs_*`, `memory.?`), shell-style.",
    )
    rate_limit_per_developer = models.PositiveIntegerField(
        "calls per minute per developer", null=True, blank=True, help_text="Empty: no limit."
    )
    rate_limit_per_organization = models.PositiveIntegerField(
        "calls per minute per organization", null=True, blank=True, help_text="Empty: no limit."
    )
    monthly_calls_per_seat = models.PositiveIntegerField(
        "monthly calls per seat", null=True, blank=True, help_text="The cap is this × seats. Empty: no cap."
    )
    at_cap = models.CharField("at the cap", max_length=16, choices=AtCap.choices, default=AtCap.REFUSE)
    metered_billing = models.CharField(
        "usage billed", max_length=16, choices=MeteredBilling.choices, default=MeteredBilling.NONE
    )
    stripe_meter_event_name = models.CharField(
        "Stripe meter event name",
        max_length=100,
        blank=True,
        default="",
        help_text="The `event_name` of the Stripe Billing meter that calls are reported to.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "code"]
        constraints = [
            models.CheckConstraint(condition=models.Q(at_cap__in=AtCap.values), name="plan_at_cap_valid"),
            models.CheckConstraint(
                condition=models.Q(metered_billing__in=MeteredBilling.values), name="plan_metered_billing_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


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
        help_text="Empty: the default plan (HOTCROSS_DEFAULT_PLAN).",
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
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

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


class UsageEvent(models.Model):
    """One served MCP `tools/call` (metering and the admin usage chart)."""

    id = models.BigAutoField(primary_key=True)
    developer = models.ForeignKey(Developer, on_delete=models.CASCADE, related_name="usage_events")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="usage_events")
    tool_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["developer", "created_at"], name="usage_developer_time_idx"),
            models.Index(fields=["organization", "created_at"], name="usage_organization_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} by {self.developer_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class UsageRollup(models.Model):
    """Served calls per (organization, developer, tool, UTC day): calls, errors (calls not ok) and their total
    duration. Written in the same statement or transaction as the raw events (`accounts.services.usage`), so the
    rollups always equal the events; every read of usage figures (the `usage` tool, the organization page, the
    dashboard) comes from here and costs the same whatever the number of events. `manage.py usage rebuild-rollups`
    rebuilds them from the raw events and checks them."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="usage_rollups")
    developer = models.ForeignKey(Developer, on_delete=models.CASCADE, related_name="usage_rollups")
    tool_name = models.CharField(max_length=200)
    day = models.DateField(help_text="The UTC day of the calls.")
    calls = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    duration_ms = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "organization", "developer", "tool_name"]
        constraints = [
            # The upsert's conflict target; its leading columns also serve an organization's days.
            models.UniqueConstraint(
                fields=["organization", "day", "developer", "tool_name"], name="usage_rollup_unique"
            ),
        ]
        indexes = [models.Index(fields=["developer", "day"], name="usage_rollup_developer_day_idx")]

    def __str__(self) -> str:
        return f"{self.tool_name} by {self.developer_id} on {self.day}: {self.calls}"


class LegacyCustomer(models.Model):
    """A row of the old system's `customers` table (1 customer = 1 Stripe customer = 1 key). Read-only.

    Unmanaged: Django never creates or drops the table; it exists only where the old system ran. The migration
    `0002_legacy_conversion` turns each row into a developer and an organization (see `accounts.legacy`).
    """

    id = models.UUIDField(primary_key=True)
    stripe_customer_id = models.TextField(null=True, blank=True)
    email = models.TextField()
    first_name = models.TextField(null=True, blank=True)
    last_name = models.TextField(null=True, blank=True)
    company = models.TextField(null=True, blank=True)
    subscription_status = models.TextField(null=True, blank=True)
    subscription_updated_at = models.DateTimeField(null=True, blank=True)
    api_key_hash = models.TextField(null=True, blank=True)
    api_key_prefix = models.TextField(null=True, blank=True)
    api_key_created_at = models.DateTimeField(null=True, blank=True)
    api_key_revoked_at = models.DateTimeField(null=True, blank=True)
    api_key_last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "customers"
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


# --- Usage billing through Stripe Billing meters (issue 16, part 2: `accounts.billing.usage`) ---------------


class MeterReportState(models.TextChoices):
    PENDING = "pending", "Pending (to send, or sent and not yet recorded)"
    ACCEPTED = "accepted", "Accepted by Stripe"
    EXPIRED = "expired", "Too old for Stripe (never sent)"


class MeterReport(models.Model):
    """One meter event for Stripe: an organization's billable calls of one reporting interval (`sequence` 0), or the
    calls that arrived late for an interval already reported (`sequence` 1, 2…). The `identifier` is deterministic
    (organization + interval [+ sequence]), so a resend after a crash or a retry is recognized by Stripe as a
    duplicate and never billed twice. Written before sending; marked accepted after."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="meter_reports")
    interval_start = models.DateTimeField()
    interval_end = models.DateTimeField()
    sequence = models.PositiveIntegerField(default=0, help_text="0: the interval's report; 1, 2…: late calls.")
    identifier = models.CharField(max_length=100, unique=True, editable=False)
    event_name = models.CharField(max_length=100)
    stripe_customer_id = models.CharField("Stripe customer id", max_length=255)
    value = models.BigIntegerField()
    timestamp = models.DateTimeField(help_text="The meter event's time: inside the interval.")
    state = models.CharField(max_length=16, choices=MeterReportState.choices, default=MeterReportState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-interval_start", "organization", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "interval_start", "sequence"], name="meter_report_unique"),
            models.CheckConstraint(condition=models.Q(state__in=MeterReportState.values), name="meter_report_state"),
            models.CheckConstraint(condition=models.Q(value__gt=0), name="meter_report_value_positive"),
        ]
        indexes = [models.Index(fields=["state", "interval_start"], name="meter_report_state_idx")]

    def __str__(self) -> str:
        return self.identifier


class UsageBillingState(models.Model):
    """Per organization billed by usage: since when (`billing_since`, the start of the interval in which it was first
    seen billable), how far its intervals have been worked out (`planned_until`), and the last error."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, primary_key=True, related_name="usage_billing"
    )
    billing_since = models.DateTimeField(null=True, blank=True)
    planned_until = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"usage billing of {self.organization_id}"
