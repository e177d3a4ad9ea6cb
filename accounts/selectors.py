"""Reads of the accounts domain used by more than one caller. Nothing here writes.

The seat rule itself (who holds a seat, in which order, who is beyond the limit) is on the model querysets
(`DeveloperQuerySet`, `OrganizationQuerySet`); the key check is `accounts.authentication`.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, F, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone

from accounts.choices import STATUS_STANDING, SubscriptionStatus, status_rank
from accounts.exceptions import NotFound
from accounts.models import Developer, Organization, UsageRollup

# --- organizations, developers and seats ------------------------------------------------------------------------------


def get_organization(organization_id: uuid.UUID | str) -> Organization:
    try:
        return Organization.objects.get(pk=_as_uuid(organization_id, "organization"))
    except Organization.DoesNotExist:
        raise NotFound(f"No organization has the id {organization_id}.") from None


def get_developer(developer_id: uuid.UUID | str) -> Developer:
    try:
        return Developer.objects.select_related("organization").get(pk=_as_uuid(developer_id, "developer"))
    except Developer.DoesNotExist:
        raise NotFound(f"No developer has the id {developer_id}.") from None


def seats_in_use(organization: Organization | uuid.UUID) -> int:
    return Developer.objects.seat_holders().filter(organization_id=_pk(organization)).count()


def developers_in_seat_order(organization: Organization | uuid.UUID) -> QuerySet[Developer]:
    """An organization's developers, seat holders first come first, each with `seats_ahead`, `seat_rank` and
    `beyond_seat_limit` (see `DeveloperQuerySet.with_seat_rank`)."""
    return (
        Developer.objects.filter(organization_id=_pk(organization))
        .with_seat_rank()
        .select_related("organization")
        .in_seat_order()
    )


def seat_holders_beyond(organization: Organization | uuid.UUID, seats: int) -> QuerySet[Developer]:
    """The seat holders who would be refused with `seats` seats (the newest beyond the first `seats`), in seat order:
    whom a downgrade to `seats` takes access from."""
    return (
        Developer.objects.filter(organization_id=_pk(organization))
        .seat_holders()
        .with_seat_rank()
        .filter(seats_ahead__gte=seats)
        .in_seat_order()
    )


def keys_in_use(organizations: Iterable[Organization] | QuerySet[Organization]) -> QuerySet[Developer]:
    """The developers of these organizations whose key works or would (issued, not revoked): what "revoke every key"
    revokes."""
    return Developer.objects.filter(
        organization__in=organizations, api_key_hash__isnull=False, api_key_revoked_at__isnull=True
    ).select_related("organization")


def organizations_for_admin() -> QuerySet[Organization]:
    """`Organization.objects.with_seats()` plus `last_activity`: the latest key use by any of its developers (one
    query)."""
    last_used = (
        Developer.objects.filter(organization=OuterRef("pk"))
        .order_by()
        .values("organization")
        .annotate(last=Max("api_key_last_used_at"))
        .values("last")
    )
    return Organization.objects.with_seats().annotate(last_activity=Subquery(last_used))


# --- usage ------------------------------------------------------------------------------------------------------------


def usage_per_developer_per_day(
    organization: Organization | uuid.UUID, *, days: int = 30, now: datetime.datetime | None = None
) -> tuple[datetime.date, list[dict]]:
    """An organization's recorded calls per developer per day over the last `days` UTC days (today included).

    Returns the first day of the window and rows `{developer_id, email, seat, day, calls, errors}` ordered by day (two
    queries: the sums from the rollups, whose size does not grow with the number of calls, then the emails). `seat`
    ranks the developers of the rows in the organization's seat order (0 first, as its page lists them).
    """
    today = utc_day(now)
    first_day = today - datetime.timedelta(days=days - 1)
    rows = list(
        UsageRollup.objects.filter(organization_id=_pk(organization), day__gte=first_day)
        .values("developer_id", "day")
        .annotate(calls=Sum("calls"), errors=Sum("errors"))
        .order_by("day", "developer_id")
    )
    developers = Developer.objects.filter(pk__in={row["developer_id"] for row in rows}).in_seat_order()
    seats = {pk: (seat, email) for seat, (pk, email) in enumerate(developers.values_list("id", "email"))}
    unknown = (len(seats), "")
    return first_day, [
        {**row, "email": seats.get(row["developer_id"], unknown)[1], "seat": seats.get(row["developer_id"], unknown)[0]}
        for row in rows
    ]


def utc_day(now: datetime.datetime | None = None) -> datetime.date:
    """Today (or the day of `now`) in UTC: the rollups' days."""
    return (now or timezone.now()).astimezone(datetime.UTC).date()


@dataclass(frozen=True, slots=True)
class MonthlyUsage:
    """A developer's recorded MCP tool calls in one calendar month, and their organization's total."""

    month: str  # "2025-11", in the project's time zone
    since: datetime.datetime
    until: datetime.datetime
    by_tool: dict[str, int]
    developer_total: int
    organization_total: int


def monthly_usage(
    *, developer_id: uuid.UUID, organization_id: uuid.UUID, now: datetime.datetime | None = None
) -> MonthlyUsage:
    """Calls recorded this calendar month (UTC; the month of `now`): the developer's by tool, and the organization's.
    Two small reads of the rollups, whatever the number of calls."""
    first = utc_day(now).replace(day=1)
    after = (first + datetime.timedelta(days=32)).replace(day=1)
    in_month = UsageRollup.objects.filter(day__gte=first, day__lt=after).order_by()
    by_tool = dict(
        in_month.filter(developer_id=developer_id)
        .values("tool_name")
        .annotate(n=Sum("calls"))
        .order_by("tool_name")
        .values_list("tool_name", "n")
    )
    return MonthlyUsage(
        month=f"{first:%Y-%m}",
        since=_utc_midnight(first),
        until=_utc_midnight(after),
        by_tool=by_tool,
        developer_total=sum(by_tool.values()),
        organization_total=in_month.filter(organization_id=organization_id).aggregate(n=Coalesce(Sum("calls"), 0))["n"],
    )


def _utc_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)


# --- the staff dashboard ----------------------------------------------------------------------------------------------

# In good standing: the statuses at the top of `STATUS_STANDING`, down to trialing (the statuses whose keys work by
# default). Their organizations' seats are the seats paid for.
GOOD_STANDING = STATUS_STANDING[: status_rank(SubscriptionStatus.TRIALING) + 1]
# Statuses that need someone to act: a payment failed (past due, unpaid) or the customer left (canceled).
NEEDS_ATTENTION = (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID, SubscriptionStatus.CANCELED)


@dataclass(frozen=True, slots=True)
class StatusCount:
    status: str
    label: str
    organizations: int
    needs_attention: bool


@dataclass(frozen=True, slots=True)
class DayCalls:
    day: datetime.date
    calls: int
    errors: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The figures of the staff dashboard (the admin's index). Seats count per the seat rule
    (`OrganizationQuerySet.with_seats`); days are UTC days (the rollups')."""

    organizations: int
    by_status: list[StatusCount]  # every status, best standing first
    over_seat_limit: int  # organizations (any status) with more seat holders than seats
    seats_paid: int  # Σ max_seats of the organizations in good standing
    seats_on_trial: int  # the part of seats_paid whose organizations are trialing
    seats_held: int  # Σ min(seat holders, max_seats) over the organizations in good standing
    seat_holders_refused: int  # Σ seat holders beyond max_seats over the same organizations (refused by the key check)
    today: datetime.date
    month_start: datetime.date
    calls_today: int
    errors_today: int
    calls_this_month: int
    errors_this_month: int
    first_day: datetime.date  # of the daily series
    per_day: list[DayCalls]  # days with calls only, oldest first
    webhooks_since: datetime.datetime
    webhooks_invalid: int  # deliveries that failed Stripe's signature check (never processed)
    webhooks_unprocessed: int  # valid deliveries not processed (processing failed, or under way)
    webhooks_errored: int  # processed deliveries whose processing still raised (a receiver failed)

    @property
    def webhooks_failed(self) -> int:
        return self.webhooks_invalid + self.webhooks_unprocessed + self.webhooks_errored

    @property
    def needs_attention(self) -> int:
        return sum(row.organizations for row in self.by_status if row.needs_attention)


def dashboard_figures(*, days: int = 30, now: datetime.datetime | None = None) -> Dashboard:
    """Everything the staff dashboard shows, in four aggregate queries whatever the data size: organizations by status
    and seats paid, seats held (one grouped pass over the seat holders), calls per day (one grouped pass over the
    window's usage rollups) and webhook deliveries of the last 24 hours."""
    from djstripe.models import WebhookEventTrigger  # dj-stripe's models need the app registry

    now = now or timezone.now()
    today = utc_day(now)
    month_start = today.replace(day=1)
    first_day = today - datetime.timedelta(days=days - 1)

    good = Q(subscription_status__in=GOOD_STANDING)
    figures = Organization.objects.order_by().aggregate(
        seats_paid=Coalesce(Sum("max_seats", filter=good), 0),
        seats_on_trial=Coalesce(Sum("max_seats", filter=Q(subscription_status=SubscriptionStatus.TRIALING)), 0),
        **{f"status_{status}": Count("pk", filter=Q(subscription_status=status)) for status in STATUS_STANDING},
    )
    # Seat holders per organization in one grouped pass over the seat holders' index (an organization without any
    # holds none and is not over its limit), then summed: cheaper than a count per organization at every row.
    per_organization = (
        Developer.objects.seat_holders()
        .order_by()
        .values("organization_id", "organization__max_seats", "organization__subscription_status")
        .annotate(holders=Count("pk"))
    )
    int_field = IntegerField()
    max_seats = F("organization__max_seats")
    in_good_standing = Q(organization__subscription_status__in=GOOD_STANDING)
    seats = per_organization.aggregate(
        held=Coalesce(Sum(Least(F("holders"), max_seats, output_field=int_field), filter=in_good_standing), 0),
        beyond=Coalesce(
            Sum(Greatest(F("holders") - max_seats, Value(0), output_field=int_field), filter=in_good_standing), 0
        ),
        over_seat_limit=Count("organization_id", filter=Q(holders__gt=max_seats)),
    )
    by_status = [
        StatusCount(
            status=status,
            label=SubscriptionStatus(status).label,
            organizations=figures[f"status_{status}"],
            needs_attention=status in NEEDS_ATTENTION,
        )
        for status in STATUS_STANDING
    ]

    per_day = [
        DayCalls(day=row["day"], calls=row["calls"], errors=row["errors"])
        for row in UsageRollup.objects.filter(day__gte=min(first_day, month_start))
        .order_by()
        .values("day")
        .annotate(calls=Sum("calls"), errors=Sum("errors"))
        .order_by("day")
    ]

    webhooks_since = now - datetime.timedelta(hours=24)
    webhooks = WebhookEventTrigger.objects.filter(created__gte=webhooks_since).aggregate(
        invalid=Count("pk", filter=Q(valid=False)),
        unprocessed=Count("pk", filter=Q(valid=True, processed=False)),
        errored=Count("pk", filter=Q(valid=True, processed=True) & ~Q(exception="")),
    )
    return Dashboard(
        organizations=sum(row.organizations for row in by_status),
        by_status=by_status,
        over_seat_limit=seats["over_seat_limit"],
        seats_paid=figures["seats_paid"],
        seats_on_trial=figures["seats_on_trial"],
        seats_held=seats["held"],
        seat_holders_refused=seats["beyond"],
        today=today,
        month_start=month_start,
        calls_today=sum(d.calls for d in per_day if d.day == today),
        errors_today=sum(d.errors for d in per_day if d.day == today),
        calls_this_month=sum(d.calls for d in per_day if d.day >= month_start),
        errors_this_month=sum(d.errors for d in per_day if d.day >= month_start),
        first_day=first_day,
        per_day=[d for d in per_day if d.day >= first_day],
        webhooks_since=webhooks_since,
        webhooks_invalid=webhooks["invalid"],
        webhooks_unprocessed=webhooks["unprocessed"],
        webhooks_errored=webhooks["errored"],
    )


# --- helpers ----------------------------------------------------------------------------------------------------------


def _pk(obj: Organization | uuid.UUID) -> uuid.UUID:
    return obj.pk if isinstance(obj, Organization) else obj


def _as_uuid(value: uuid.UUID | str, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise NotFound(f"'{value}' is not a valid {what} id (expected a UUID).") from None
