"""Reads of the accounts domain used by more than one caller. Nothing here writes.

The seat rule itself (who holds a seat, in which order, who is beyond the limit) is on the model querysets
(`DeveloperQuerySet`, `OrganizationQuerySet`); the key check is `accounts.authentication`.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.exceptions import NotFound
from accounts.models import Developer, Organization, UsageEvent

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
    """An organization's recorded calls per developer per day over the last `days` days (today included).

    Returns the first day of the window and rows `{developer_id, email, seat, day, calls, errors}` ordered by day (two
    queries: the counts from the (organization, created_at) index, then the emails). `seat` ranks the developers of
    the rows in the organization's seat order (0 first, as its page lists them). Days are in the current time zone.
    """
    today = timezone.localdate(now or timezone.now())
    first_day = today - datetime.timedelta(days=days - 1)
    since = timezone.make_aware(datetime.datetime.combine(first_day, datetime.time.min))
    # Grouped without joining developers (a join makes PostgreSQL hash every developer); emails come separately.
    rows = list(
        UsageEvent.objects.filter(organization_id=_pk(organization), created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("developer_id", "day")
        .annotate(calls=Count("id"), errors=Count("id", filter=Q(ok=False)))
        .order_by("day", "developer_id")
    )
    developers = Developer.objects.filter(pk__in={row["developer_id"] for row in rows}).in_seat_order()
    seats = {pk: (seat, email) for seat, (pk, email) in enumerate(developers.values_list("id", "email"))}
    unknown = (len(seats), "")
    return first_day, [
        {**row, "email": seats.get(row["developer_id"], unknown)[1], "seat": seats.get(row["developer_id"], unknown)[0]}
        for row in rows
    ]


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
    """Calls recorded this calendar month (the month of `now`): the developer's by tool, and the organization's."""
    local = timezone.localtime(now or timezone.now())
    since = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    until = (since + datetime.timedelta(days=32)).replace(day=1)
    in_month = UsageEvent.objects.filter(created_at__gte=since, created_at__lt=until).order_by()
    by_tool = dict(
        in_month.filter(developer_id=developer_id)
        .values("tool_name")
        .annotate(n=Count("pk"))
        .order_by("tool_name")
        .values_list("tool_name", "n")
    )
    return MonthlyUsage(
        month=f"{since:%Y-%m}",
        since=since,
        until=until,
        by_tool=by_tool,
        developer_total=sum(by_tool.values()),
        organization_total=in_month.filter(organization_id=organization_id).count(),
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
