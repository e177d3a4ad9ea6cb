"""What an organization's own pages (`/org/`, issue 30) read: its members with their seat, key and last activity, the
seats paid and held, pending invitations; this month's calls per member and per tool against the plan's cap; the
calls of the last 30 days per member per day; the organization's history. Nothing here writes.

Every read costs a fixed number of queries whatever the number of members or calls: usage comes from the daily
rollups, never from the raw events.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from accounts import plans, selectors
from accounts.models import Developer, Invitation, Organization, UsageRollup
from accounts.monthly_use import cap_state

# A member's seat, in words for the members table.
HOLDS_SEAT = "holds a seat"
NO_SEAT = "no seat"
BEYOND_SEAT_LIMIT = "beyond the seat limit"


@dataclass
class PendingInvitation:
    invitation: Invitation
    beyond_seats: bool  # with a seat, and past the paid seats counting the seats held and the invitations before it


MEMBERS_PER_PAGE = 100


@dataclass
class MembersPage:
    members: list[Developer]  # this page's, by email; each with `seat` (words above), `last_activity` (or None)
    invitations: list[PendingInvitation]  # oldest first
    seats_paid: int
    seats_held: int
    seats_beyond: int  # seat holders refused by the key check (more holders than paid seats)
    pending_seat_invitations: int
    member_count: int  # every member (matching the search)
    page: int  # 1 for the first
    pages: int
    search: str

    @property
    def next_invitation_beyond_seats(self) -> bool:
        """An invitation with a seat sent now would be beyond the paid seats: the invitee could join only once
        seats are added."""
        return self.seats_held + self.pending_seat_invitations >= self.seats_paid


def members_page(
    organization: Organization,
    *,
    page: int = 1,
    search: str = "",
    per_page: int = MEMBERS_PER_PAGE,
    now: datetime.datetime | None = None,
) -> MembersPage:
    """A page of the organization's members by email (`search`: part of an address or name), the seats held and
    paid, and the pending invitations: four queries whatever the number of members.

    Seats (the rule of `DeveloperQuerySet`): the seat holders in seat order, the first `max_seats` of them within the
    paid seats, the others beyond the seat limit. A member's last activity is the later of their key's last use and
    the last day they have recorded calls (the rollups: the calls may have been made with an OAuth token). Pending
    invitations with a seat are beyond the paid seats once the seats held plus the seat invitations sent before them
    exceed `max_seats`."""
    holders = list(
        Developer.objects.filter(organization_id=organization.pk)
        .seat_holders()
        .in_seat_order()
        .values_list("pk", flat=True)
    )
    rank = {pk: index for index, pk in enumerate(holders)}
    found = Developer.objects.filter(organization_id=organization.pk)
    search = (search or "").strip()[:100]
    if search:
        found = found.filter(
            Q(email__icontains=search) | Q(first_name__icontains=search) | Q(last_name__icontains=search)
        )
    count = found.count()
    pages = max(1, -(-count // per_page))
    page = min(max(1, page), pages)
    last_call_day = (
        UsageRollup.objects.filter(developer=OuterRef("pk")).order_by("-day").values("day")[:1]
    )  # the (developer, day) index: one index probe per member of the page
    members = list(
        found.annotate(last_call_day=Subquery(last_call_day)).order_by("email", "id")[
            (page - 1) * per_page : page * per_page
        ]
    )
    for member in members:
        place = rank.get(member.pk)
        if place is None:
            member.seat = NO_SEAT
        else:
            member.seat = HOLDS_SEAT if place < organization.max_seats else BEYOND_SEAT_LIMIT
        member.last_activity = _later(member.api_key_last_used_at, member.last_call_day)
    held = len(holders)
    pending = list(
        Invitation.objects.pending(now)
        .filter(organization_id=organization.pk)
        .select_related("invited_by")
        .order_by("created_at", "id")
    )
    invitations = []
    seat_invitations = 0
    for invitation in pending:
        if invitation.with_seat:
            seat_invitations += 1
        invitations.append(
            PendingInvitation(
                invitation=invitation,
                beyond_seats=invitation.with_seat and held + seat_invitations > organization.max_seats,
            )
        )
    return MembersPage(
        members=members,
        invitations=invitations,
        seats_paid=organization.max_seats,
        seats_held=held,
        seats_beyond=max(0, held - organization.max_seats),
        pending_seat_invitations=seat_invitations,
        member_count=count,
        page=page,
        pages=pages,
        search=search,
    )


def _later(used_at: datetime.datetime | None, call_day: datetime.date | None) -> datetime.datetime | None:
    """The later of a key's last use and the UTC day of the last recorded call (taken as that day's midnight when the
    key's use says nothing later)."""
    day_start = datetime.datetime.combine(call_day, datetime.time.min, tzinfo=datetime.UTC) if call_day else None
    if used_at is None or (day_start is not None and day_start.date() > used_at.astimezone(datetime.UTC).date()):
        return day_start
    return used_at


# --- usage ------------------------------------------------------------------------------------------------------------


@dataclass
class MemberUsage:
    developer_id: uuid.UUID
    email: str
    is_active: bool
    calls: int = 0
    errors: int = 0
    percent_of_cap: float | None = None  # None: no cap


@dataclass
class ToolUsage:
    tool_name: str
    calls: int
    errors: int
    percent_of_cap: float | None = None


@dataclass
class UsagePage:
    month: str  # "2026-12"
    since: datetime.date
    plan_label: str
    seats: int
    cap: int | None  # calls this month for the whole organization; None: no cap
    calls: int
    errors: int
    percent_of_cap: float | None
    cap_state: str  # "", "warning" (≥ 80 %), "reached"
    per_member: list[MemberUsage] = field(default_factory=list)  # most calls first, then by email
    per_tool: list[ToolUsage] = field(default_factory=list)  # most calls first, then by name
    chart: UsageChart | None = None


def usage_page(organization: Organization, *, days: int = 30, now: datetime.datetime | None = None) -> UsagePage:
    """This calendar month's (UTC) calls of the organization per member (every member, 0 for those without calls)
    and per tool against its cap (calls per seat of its plan × its paid seats; no cap without one), and the last
    `days` days per member per day for the chart. A fixed number of queries, from the rollups."""
    now = now or timezone.now()
    first = plans.month_start(now).date()
    in_month = UsageRollup.objects.filter(organization_id=organization.pk, day__gte=first).order_by()
    per_developer = {
        row["developer_id"]: row
        for row in in_month.values("developer_id").annotate(calls=Sum("calls"), errors=Sum("errors"))
    }
    per_tool = [
        ToolUsage(tool_name=row["tool_name"], calls=row["calls"], errors=row["errors"])
        for row in in_month.values("tool_name").annotate(calls=Sum("calls"), errors=Sum("errors"))
    ]
    terms = plans.terms_for(organization.plan_id)
    cap = terms.monthly_cap(organization.max_seats)
    members = [
        MemberUsage(
            developer_id=pk,
            email=email,
            is_active=is_active,
            calls=per_developer.get(pk, {}).get("calls", 0),
            errors=per_developer.get(pk, {}).get("errors", 0),
        )
        for pk, email, is_active in Developer.objects.filter(organization_id=organization.pk)
        .order_by("email")
        .values_list("id", "email", "is_active")
    ]
    for item in [*members, *per_tool]:
        item.percent_of_cap = _percent(item.calls, cap)
    members.sort(key=lambda item: (-item.calls, item.email))
    per_tool.sort(key=lambda item: (-item.calls, item.tool_name))
    calls = sum(item.calls for item in per_tool)
    return UsagePage(
        month=f"{first:%Y-%m}",
        since=first,
        plan_label=terms.label,
        seats=organization.max_seats,
        cap=cap,
        calls=calls,
        errors=sum(item.errors for item in per_tool),
        percent_of_cap=_percent(calls, cap),
        cap_state=cap_state(calls, cap),
        per_member=members,
        per_tool=per_tool,
        chart=usage_chart(organization, days=days, now=now),
    )


@dataclass
class ChartSeries:
    label: str  # a member's email, or "others"
    calls: int
    errors: int
    others: bool = False


@dataclass
class UsageChart:
    """The last `days` UTC days' calls per member per day, the busiest `NAMED_MEMBERS` members each a series (in
    seat order: the earliest seat holder at the bottom of each bar), everyone else together as "others" (on top)."""

    first_day: datetime.date
    days: int
    series: list[ChartSeries]
    per_day: list[tuple[datetime.date, int, int]]  # (day, index in `series`, calls)


# As many members as the chart's palette has colours, less one for "others" (`accounts.admin.chart.PALETTE`).
NAMED_MEMBERS = 7


def usage_chart(organization: Organization, *, days: int = 30, now: datetime.datetime | None = None) -> UsageChart:
    """The chart's figures in four small queries from the rollups, whatever the number of members and calls: each
    member's total over the window; the named members' emails in seat order; the named members' calls per day; the
    others' calls per day."""
    first_day = selectors.utc_day(now) - datetime.timedelta(days=days - 1)
    window = UsageRollup.objects.filter(organization_id=organization.pk, day__gte=first_day).order_by()
    totals = {
        row["developer_id"]: row
        for row in window.values("developer_id").annotate(calls=Sum("calls"), errors=Sum("errors"))
    }
    busiest = sorted(totals, key=lambda pk: (-totals[pk]["calls"], str(pk)))
    named = busiest if len(busiest) <= NAMED_MEMBERS + 1 else busiest[:NAMED_MEMBERS]
    ordered = list(Developer.objects.filter(pk__in=named).in_seat_order().values_list("id", "email"))
    place = {pk: index for index, (pk, _) in enumerate(ordered)}
    series = [ChartSeries(email, totals[pk]["calls"], totals[pk]["errors"]) for pk, email in ordered]
    per_day = [
        (row["day"], place[row["developer_id"]], row["calls"])
        for row in window.filter(developer_id__in=named).values("day", "developer_id").annotate(calls=Sum("calls"))
    ]
    others = list(window.exclude(developer_id__in=named).values("day").annotate(calls=Sum("calls")))  # always asked:
    # the same queries whatever the number of members
    if len(named) < len(busiest):
        rest = [pk for pk in busiest if pk not in place]
        series.append(
            ChartSeries(
                "others",
                sum(totals[pk]["calls"] for pk in rest),
                sum(totals[pk]["errors"] for pk in rest),
                others=True,
            )
        )
        per_day += [(row["day"], len(series) - 1, row["calls"]) for row in others]
    per_day.sort(key=lambda item: (item[0], item[1]))
    return UsageChart(first_day=first_day, days=days, series=series, per_day=per_day)


def _percent(calls: int, cap: int | None) -> float | None:
    if cap is None:
        return None
    if cap == 0:
        return 100.0 if calls else 0.0
    return round(calls * 100 / cap, 1)


# --- history ----------------------------------------------------------------------------------------------------------


def history(organization: Organization) -> QuerySet[LogEntry]:
    """Every admin-history line (`LogEntry`) about the organization, its developers (present and removed: removed
    ones are deactivated, never deleted) and its invitations, newest first, with its user (who did it: staff, a
    developer's shadow user, or the system user; `accounts.audit`). Two queries for the ids, then the lines'."""
    kinds = ContentType.objects.get_for_models(Organization, Developer, Invitation)  # cached after the first call
    developer_ids = [
        str(pk) for pk in Developer.objects.filter(organization_id=organization.pk).values_list("pk", flat=True)
    ]
    invitation_ids = [
        str(pk) for pk in Invitation.objects.filter(organization_id=organization.pk).values_list("pk", flat=True)
    ]
    about = Q(content_type=kinds[Organization], object_id=str(organization.pk))
    if developer_ids:
        about |= Q(content_type=kinds[Developer], object_id__in=developer_ids)
    if invitation_ids:
        about |= Q(content_type=kinds[Invitation], object_id__in=invitation_ids)
    return LogEntry.objects.filter(about).select_related("user", "content_type").order_by("-action_time", "-id")
