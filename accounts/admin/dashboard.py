"""The staff dashboard on the admin's index: the figures of `selectors.dashboard_figures`, each with a link to the list
it counts when the viewer may open that list. `hotcross.admin_site.HotcrossAdminSite.index` renders it with
`admin/hotcross/dashboard.html`."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

from accounts import monthly_use, selectors
from accounts.admin.chart import Chart, calls_chart
from accounts.admin.display import status_badge
from accounts.admin.registry import registered_admin
from accounts.models import Organization

DAYS = 30
# The calls card spans the dashboard beside the "Recent actions" column: about this many pixels on a laptop screen.
CHART_WIDTH = 1000


@dataclass(frozen=True)
class Line:
    """One counted thing: a label, its count, the list it counts (None: not for this viewer) and whether it is a
    problem when not zero."""

    label: str
    count: int
    url: str | None = None
    flagged: bool = False
    badge: str = ""

    @property
    def alert(self) -> bool:
        return self.flagged and self.count > 0


@dataclass(frozen=True)
class Board:
    figures: selectors.Dashboard
    statuses: list[Line]
    over_seat_limit: Line
    webhooks: list[Line]
    webhooks_url: str | None  # every delivery of the last 24 hours (superusers)
    chart: Chart
    days: int
    monthly_cap: list[Line] = field(default_factory=list)  # issue 16: organizations near or at their monthly cap

    @property
    def seats_held_percent(self) -> int | None:
        paid = self.figures.seats_paid
        return round(100 * self.figures.seats_held / paid) if paid else None


def dashboard(request: HttpRequest, site: admin.AdminSite) -> Board | None:
    """The dashboard for this viewer, or None when they may not view organizations (the figures are about them)."""
    organizations = registered_admin(site, Organization)
    if organizations is None or not organizations.has_view_or_change_permission(request):
        return None
    figures = selectors.dashboard_figures(days=DAYS)
    org_list = reverse("admin:accounts_organization_changelist")
    statuses = [
        Line(
            label=row.label,
            count=row.organizations,
            url=f"{org_list}?{urlencode({'subscription_status__exact': row.status})}",
            flagged=row.needs_attention,
            badge=status_badge(row.status, row.label),
        )
        for row in figures.by_status
    ]
    over = Line("Over their seat limit", figures.over_seat_limit, f"{org_list}?over_seat_limit=yes", flagged=True)
    webhooks_url = _webhooks_url(request, site, figures.webhooks_since)
    # Each list shows exactly the deliveries counted on its line (the three are disjoint).
    webhooks = [
        Line(label, count, f"{webhooks_url}&{query}" if webhooks_url else None, flagged=True)
        for label, count, query in (
            ("Rejected (signature check failed)", figures.webhooks_invalid, "valid__exact=0"),
            (
                "Not processed",
                figures.webhooks_unprocessed,
                "valid__exact=1&processed__exact=0",
            ),
            (
                "Processed with an error",
                figures.webhooks_errored,
                "valid__exact=1&processed__exact=1&exception__gt=",
            ),
        )
    ]
    capped = monthly_use.with_monthly_use(Organization.objects.all())
    monthly_cap = [
        Line(
            label,
            monthly_use.at_least_percent_of_cap(capped, percent).count(),
            f"{org_list}?monthly_cap={percent}",
            flagged=True,
        )
        for label, percent in (
            (f"At {monthly_use.CAP_WARNING_PERCENT} % or more of their monthly cap", monthly_use.CAP_WARNING_PERCENT),
            ("Monthly cap reached", 100),
        )
    ]
    return Board(
        monthly_cap=monthly_cap,
        figures=figures,
        statuses=statuses,
        over_seat_limit=over,
        webhooks=webhooks,
        webhooks_url=webhooks_url,
        chart=calls_chart(figures.first_day, figures.per_day, days=DAYS, width=CHART_WIDTH),
        days=DAYS,
    )


def _webhooks_url(request: HttpRequest, site: admin.AdminSite, since: datetime.datetime) -> str | None:
    """dj-stripe's list of webhook deliveries since `since`, when the viewer may open it (superusers)."""
    from djstripe.models import WebhookEventTrigger

    triggers = registered_admin(site, WebhookEventTrigger)
    if triggers is None or not triggers.has_view_permission(request):
        return None
    return (
        reverse("admin:djstripe_webhookeventtrigger_changelist")
        + "?"
        + urlencode({"created__gte": since.isoformat(sep=" ", timespec="seconds")})
    )
