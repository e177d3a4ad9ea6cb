"""The organization's own pages for its owners and admins (issue 30): members and invitations, a member's role, key
and activation, one's own seat, this month's usage, and the history (with a CSV export). Billing is
`portal.billing_views`.

Every view is `manager_required` (owners and admins of the signed-in person's organization; objects named in a URL
are looked up inside it: another organization's ids are 404s). The rules are in `accounts.services` (every write)
and `accounts.org_pages` (every read); a view turns a refusal (`AccountsError`) into its message on the page: 400,
403 for `NotAllowed`, 429 with Retry-After for `Throttled`. A write that succeeds redirects to the page with a notice
(POST-redirect-GET), except when it issues a key: the key is shown once on the answer itself, never stored, with
`Cache-Control: no-store`.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.auth import update_session_auth_hash
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from accounts import org_pages, services
from accounts.admin.chart import OTHERS_COLOR, PALETTE, Chart, Series, day_chart
from accounts.audit import SYSTEM_USERNAME
from accounts.choices import Role
from accounts.exceptions import AccountsError, InvalidInput, NotAllowed, Throttled
from accounts.models import Developer
from infra.proxy import client_ip
from oauth.models import DeveloperAccount
from portal.access import invitation_of, manager_required, member_of, page

NOTICE_KEY = "hotcross_org_notice"
HISTORY_PAGE_SIZE = 50
USAGE_DAYS = 30
GRACE_CHOICES = [("", "none: the old key stops now"), ("1h", "1 hour"), ("24h", "24 hours")]
SYSTEM_WHO = "Stripe/system"


# --- shared ----------------------------------------------------------------------------------------------------------


def _done(request: HttpRequest, route: str, notice: str) -> HttpResponse:
    """POST-redirect-GET: the notice waits in the session for the page it redirects to."""
    request.session[NOTICE_KEY] = notice
    return HttpResponseRedirect(reverse(route))


def _notice(request: HttpRequest) -> str | None:
    return request.session.pop(NOTICE_KEY, None)


def _refusal_status(error: AccountsError) -> int:
    if isinstance(error, NotAllowed):
        return 403
    if isinstance(error, Throttled):
        return 429
    return 400


def _with_retry_after(response: HttpResponse, error: AccountsError | None) -> HttpResponse:
    if isinstance(error, Throttled):
        response["Retry-After"] = str(max(1, int(error.retry_after)))
    return response


def _keep_own_session(request: HttpRequest, member: Developer) -> None:
    """A key of the signed-in manager's own changed: their web sessions ended (`oauth.grants.end_web_sign_ins`);
    this one stays."""
    if member.pk == request.member.pk:
        request.user.refresh_from_db(fields=["password"])
        update_session_auth_hash(request, request.user)


def _members_page(
    request: HttpRequest,
    *,
    error: AccountsError | None = None,
    new_key: str = "",
    new_key_for: Developer | None = None,
    notice: str | None = None,
    form: dict[str, Any] | None = None,
) -> HttpResponse:
    organization = request.member.organization
    raw_page = request.GET.get("page", "1")
    data = org_pages.members_page(
        organization,
        page=int(raw_page) if raw_page.isdigit() and len(raw_page) < 10 else 1,
        search=request.GET.get("q", ""),
    )
    for row in data.members:
        row.action_url = reverse("org_member", args=[row.pk])
    is_owner = request.member.role == Role.OWNER
    context = {
        "title": f"{organization.name}: members",
        "data": data,
        "roles": [(value, label) for value, label in Role.choices if is_owner or value != Role.OWNER],
        "grace_options": format_html_join("", '<option value="{}">{}</option>', GRACE_CHOICES),
        "new_key": new_key,
        "new_key_for": new_key_for,
        "error": str(error) if error else None,
        "notice": notice if notice is not None else _notice(request),
        "form": form or {"role": Role.MEMBER, "with_seat": True},
    }
    response = page(request, "portal/org_members.html", context, status=_refusal_status(error) if error else 200)
    if new_key:
        response["Cache-Control"] = "no-store"
    return _with_retry_after(response, error)


# --- members and invitations ------------------------------------------------------------------------------------------


@manager_required
@require_GET
def members(request: HttpRequest) -> HttpResponse:
    """The members (role, seat, key, last activity), the seats paid and held, the invitation form and the pending
    invitations."""
    return _members_page(request)


@manager_required
@require_POST
def invite(request: HttpRequest) -> HttpResponse:
    """Invite an address with a role (owners may invite owners); an admin or owner may come without a seat."""
    email = request.POST.get("email", "").strip()
    role = request.POST.get("role", Role.MEMBER)
    with_seat = role == Role.MEMBER or bool(request.POST.get("with_seat"))
    form = {"email": email, "role": role, "with_seat": with_seat}
    try:
        invitation, _token = services.invite(
            by=request.member,
            email=email,
            role=role,
            with_seat=with_seat,
            actor=request.user,
            client_ip=client_ip(request),
        )
    except AccountsError as error:
        return _members_page(request, error=error, form=form)
    notice = (
        f"Invitation mailed to {invitation.email}: the link works until {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
    )
    data = org_pages.members_page(request.member.organization)
    if invitation.with_seat and any(p.beyond_seats and p.invitation.pk == invitation.pk for p in data.invitations):
        notice += (
            f" This invitation is beyond your {data.seats_paid} paid seat{'s' if data.seats_paid != 1 else ''}: "
            "the invitee can join once you add seats (Billing)."
        )
    return _done(request, "org_home", notice)


@manager_required
@require_POST
def invitation_action(request: HttpRequest, invitation_id: Any) -> HttpResponse:
    """`action=resend` (a new link is mailed, the old one stops working, a new expiry) or `action=revoke`."""
    invitation = invitation_of(request, invitation_id)
    action = request.POST.get("action", "")
    try:
        if action == "resend":
            services.resend_invitation(
                by=request.member, invitation=invitation, actor=request.user, client_ip=client_ip(request)
            )
            notice = f"A new invitation link was mailed to {invitation.email}; the earlier link no longer works."
        elif action == "revoke":
            revoked = services.revoke_invitation(by=request.member, invitation=invitation, actor=request.user)
            notice = (
                f"The invitation of {invitation.email} was revoked: its link no longer works."
                if revoked
                else f"The invitation of {invitation.email} was already {invitation.state}."
            )
        else:
            raise InvalidInput("Choose resend or revoke.")
    except AccountsError as error:
        return _members_page(request, error=error)
    return _done(request, "org_home", notice)


@manager_required
@require_POST
@sensitive_variables("new_key")
def member_action(request: HttpRequest, member_id: Any) -> HttpResponse:
    """One action on a member of the organization (`action`): `role` (with `role`), `deactivate`, `activate`,
    `remove`, `rotate` (with `grace` and the `key_version` the page showed; the new key is shown once, to hand
    over) or `revoke_key`. Only owners act on owners; the last owner stays one (`accounts.services.members`)."""
    member = member_of(request, member_id)
    by, actor = request.member, request.user
    action = request.POST.get("action", "")
    try:
        if action == "role":
            role = request.POST.get("role", "")
            before = member.role
            services.change_role(by=by, member=member, role=role, actor=actor)
            notice = (
                f"{member.email} is now {Role(role).label.lower()}."
                if before != role
                else f"{member.email} was already {Role(role).label.lower()}."
            )
        elif action == "deactivate":
            changed = services.deactivate_member(by=by, member=member, actor=actor)
            notice = (
                f"{member.email} was deactivated: their key stops working and their seat is free."
                if changed
                else (f"{member.email} was already inactive.")
            )
        elif action == "activate":
            changed = services.activate_member(by=by, member=member, actor=actor)
            notice = f"{member.email} is active again." if changed else f"{member.email} was already active."
        elif action == "remove":
            changed = services.remove_member(by=by, member=member, actor=actor)
            notice = (
                f"{member.email} was removed: deactivated, their key revoked (their usage and history stay)."
                if changed
                else f"{member.email} had already been removed."
            )
        elif action == "rotate":
            grace = services.parse_grace(request.POST.get("grace"))
            member, new_key = services.rotate_member_key(
                by=by,
                member=member,
                actor=actor,
                if_key_version=request.POST.get("key_version") or "",
                grace=grace,
            )
            _keep_own_session(request, member)
            works = " The old key keeps working for the grace period." if grace else " The old key no longer works."
            return _members_page(
                request,
                new_key=new_key,
                new_key_for=member,
                notice=f"New key for {member.email}: hand it over now, it is shown only once.{works}",
            )
        elif action == "revoke_key":
            changed = services.revoke_member_key(by=by, member=member, actor=actor)
            _keep_own_session(request, member)
            notice = (
                f"The key of {member.email} was revoked: it no longer works and the seat is free."
                if changed
                else f"{member.email} had no key in use."
            )
        else:
            raise InvalidInput("Choose an action: role, deactivate, activate, remove, rotate or revoke_key.")
    except AccountsError as error:
        return _members_page(request, error=error)
    return _done(request, "org_home", notice)


@manager_required
@require_POST
@sensitive_variables("new_key")
def own_seat(request: HttpRequest) -> HttpResponse:
    """The signed-in owner or admin takes a seat (`action=take`: a key, shown once) or gives theirs up
    (`action=give_up`: their key is revoked)."""
    member = request.member
    action = request.POST.get("action", "")
    try:
        if action == "take":
            new_key = services.take_seat(developer=member, actor=request.user)
            _keep_own_session(request, member)
            return _members_page(
                request,
                new_key=new_key,
                new_key_for=member,
                notice="You hold a seat now: here is your key, shown only once.",
            )
        if action == "give_up":
            changed = services.give_up_seat(developer=member, actor=request.user)
            _keep_own_session(request, member)
            notice = "You gave up your seat: your key no longer works." if changed else "You held no seat."
        else:
            raise InvalidInput("Choose take or give_up.")
    except AccountsError as error:
        return _members_page(request, error=error)
    return _done(request, "org_home", notice)


# --- usage ------------------------------------------------------------------------------------------------------------


@manager_required
@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    """This month's calls per member and per tool against the plan's cap, and the last 30 days per member."""
    organization = request.member.organization
    data = org_pages.usage_page(organization, days=USAGE_DAYS)
    context = {
        "title": f"{organization.name}: usage",
        "data": data,
        "chart": _chart(data.chart),
        "days": USAGE_DAYS,
        "notice": _notice(request),
    }
    return page(request, "portal/org_usage.html", context)


def _chart(figures: org_pages.UsageChart) -> Chart:
    """The staff usage chart's drawing (`accounts.admin.chart`) of the page's figures: a colour per named member,
    grey for the others."""
    series = [
        Series(
            label=item.label,
            color=OTHERS_COLOR if item.others else PALETTE[index % len(PALETTE)],
            calls=item.calls,
            errors=item.errors,
        )
        for index, item in enumerate(figures.series)
    ]
    values = ((day, series[index], calls) for day, index, calls in figures.per_day)
    chart = day_chart(figures.first_day, values, series, days=figures.days)
    chart.total_calls = sum(item.calls for item in series)
    chart.total_errors = sum(item.errors for item in series)
    return chart


# --- history ----------------------------------------------------------------------------------------------------------

CSV_HEADER = ["when (UTC)", "who", "about", "what", "action"]


def who_names(entries: Iterable[LogEntry]) -> dict[int, str]:
    """Who did each line, by user id: a developer's email for their shadow user (owners and admins act as it),
    "Stripe/system" for the system user (webhooks, the command line), staff's username otherwise. One query."""
    users = {entry.user_id: entry.user for entry in entries}
    emails = dict(DeveloperAccount.objects.filter(user_id__in=list(users)).values_list("user_id", "developer__email"))
    names = {}
    for user_id, user in users.items():
        if user_id in emails:
            names[user_id] = emails[user_id]
        elif user.username == SYSTEM_USERNAME:
            names[user_id] = SYSTEM_WHO
        else:
            names[user_id] = user.get_username()
    return names


def history_rows(entries: list[LogEntry]) -> list[dict[str, Any]]:
    """The history lines as the page and the CSV show them."""
    names = who_names(entries)
    return [
        {
            "when": entry.action_time,
            "who": names[entry.user_id],
            "about": f"{entry.content_type.name if entry.content_type else ''} {entry.object_repr}".strip(),
            "what": entry.get_change_message(),
            "action": {1: "added", 2: "changed", 3: "deleted"}.get(entry.action_flag, ""),
        }
        for entry in entries
    ]


@manager_required
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    """Every owner/admin, staff and Stripe action on the organization, its members and its invitations, newest
    first, 50 a page; `?format=csv`: every line as CSV (streamed)."""
    organization = request.member.organization
    entries = org_pages.history(organization)
    if request.GET.get("format") == "csv":
        return _history_csv(entries, organization.name)
    raw_page = request.GET.get("page", "1")
    number = int(raw_page) if raw_page.isdigit() and 0 < len(raw_page) < 7 and int(raw_page) > 0 else 1
    # No count of every line (a pass over the whole history table): one more line than the page says whether
    # there is an older page.
    lines = list(entries[(number - 1) * HISTORY_PAGE_SIZE : number * HISTORY_PAGE_SIZE + 1])
    context = {
        "title": f"{organization.name}: history",
        "number": number,
        "has_older": len(lines) > HISTORY_PAGE_SIZE,
        "rows": history_rows(lines[:HISTORY_PAGE_SIZE]),
        "notice": _notice(request),
    }
    return page(request, "portal/org_history.html", context)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _history_csv(entries: Any, name: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(CSV_HEADER)
        batch: list[LogEntry] = []
        for entry in entries.iterator(chunk_size=1000):
            batch.append(entry)
            if len(batch) == 1000:
                yield from _csv_lines(writer, batch)
                batch = []
        yield from _csv_lines(writer, batch)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d")
    safe = "".join(c if c.isalnum() else "-" for c in name)[:60] or "organization"
    response["Content-Disposition"] = f'attachment; filename="{safe}-history-{stamp}.csv"'
    return response


def _csv_lines(writer: Any, batch: list[LogEntry]) -> Iterator[str]:
    if not batch:
        return
    for row in history_rows(batch):
        yield writer.writerow([row["when"].astimezone(datetime.UTC).isoformat(), *_cells(row)])


def _cells(row: dict[str, Any]) -> list[str]:
    return [_safe_cell(row["who"]), _safe_cell(row["about"]), _safe_cell(row["what"]), row["action"]]


def _safe_cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection): a leading =, +, - or @ is quoted away."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
