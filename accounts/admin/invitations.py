"""Memberships in the back office (issue 30): the invitations owners and admins sent (a read-only list whose one
write is the "revoke" action, through `services.staff_revoke_invitation`), the alerts mailed to owners (read-only),
and both listed on the organization page (`memberships_section`, the newest first, capped). The
token's hash is never shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.admin.base import ReadOnlyAdmin, ServiceAdmin
from accounts.admin.display import organization_link, state_badge
from accounts.admin.registry import registered_admin
from accounts.models import AlertSent, Invitation, Organization

# Invitations and alerts listed on an organization's page; the rest are one click away in their lists.
INLINE_ROWS = 50

_INVITATION_FIELDS = (
    "email",
    "organization_link",
    "role",
    "with_seat",
    "state",
    "invited_by_email",
    "created_at",
    "sent_at",
    "sends",
    "expires_at",
    "accepted_at",
    "accepted_by",
    "revoked_at",
)


class InvitationStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(state, state) for state in ("pending", "accepted", "revoked", "expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        open_ = Q(accepted_at=None, revoked_at=None)
        conditions = {
            "pending": open_ & Q(expires_at__gt=now),
            "expired": open_ & Q(expires_at__lte=now),
            "accepted": Q(accepted_at__isnull=False),
            "revoked": Q(accepted_at=None, revoked_at__isnull=False),
        }
        condition = conditions.get(self.value() or "")
        return queryset.filter(condition) if condition is not None else queryset


@admin.register(Invitation)
class InvitationAdmin(ServiceAdmin):
    """Read-only but for "revoke": invitations are made, resent and accepted by customers on /org/."""

    list_display = (
        "email",
        "organization_link",
        "role",
        "state",
        "expires_at",
        "invited_by_email",
        "created_at",
        "sends",
    )
    list_filter = ("role", InvitationStateFilter)
    extra_lookups = ("organization__id__exact",)  # the organization page's link
    search_fields = ("email", "organization__name")
    search_help_text = "Invited address or organization name."
    list_select_related = ("organization", "invited_by")
    list_per_page = 50
    show_full_result_count = False
    fields = _INVITATION_FIELDS
    readonly_fields = _INVITATION_FIELDS
    actions = ["revoke"]

    class Media:
        css = {"all": ["accounts/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("organization", "invited_by", "accepted_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        # Nothing on this page is edited: the one write is the list's "revoke" action.
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Invitation, form: Any, change: bool) -> None:
        return None  # every field is read-only; a hand-made POST changes nothing

    @admin.display(description="organization", ordering="organization__name")
    def organization_link(self, obj: Invitation) -> str:
        return organization_link(obj.organization_id, obj.organization.name)

    @admin.display(description="state")
    def state(self, obj: Invitation) -> str:
        return state_badge(obj.state)

    @admin.display(description="invited by", ordering="invited_by__email")
    def invited_by_email(self, obj: Invitation) -> str:
        return obj.invited_by.email if obj.invited_by else "—"

    @admin.action(description="Revoke (the link stops working)", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = self.each(
            request,
            queryset.select_related("organization"),
            lambda invitation: services.staff_revoke_invitation(invitation=invitation, actor=request.user),
        )
        revoked = sum(changed for _, changed in done)
        self.report(request, "Revoked", revoked, "invitation")
        if len(done) > revoked:
            self.message_user(
                request, f"{len(done) - revoked} already accepted or revoked: left as they were.", level="warning"
            )


@admin.register(AlertSent)
class AlertSentAdmin(ReadOnlyAdmin, ServiceAdmin):
    """The alerts mailed to owners (`accounts.alerts`): read-only, written by the alerts only."""

    list_display = ("organization", "kind", "period", "sent_at", "recipients")
    list_filter = ("kind",)
    extra_lookups = ("organization__id__exact",)  # the organization page's link
    list_select_related = ("organization",)
    search_fields = ("organization__name",)
    list_per_page = 100
    show_full_result_count = False
    fields = ("organization", "kind", "period", "sent_at", "recipients")
    readonly_fields = fields


# --- on the organization page -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MembershipsSection:
    invitations: list[Invitation] | None  # None: this user may not see invitations
    invitations_url: str
    alerts: list[AlertSent] | None  # None: this user may not see the alerts
    alerts_url: str
    rows: int = INLINE_ROWS


def memberships_section(organization: Organization, site: admin.AdminSite, request: HttpRequest) -> MembershipsSection:
    """The organization page's invitations and alerts sent, newest first (at most `INLINE_ROWS` each: one query
    each), for a user who may view them; links to the full lists."""
    invitations = alerts = None
    invitations_url = alerts_url = ""
    if _may_view(site, request, Invitation):
        invitations = list(
            Invitation.objects.filter(organization=organization).select_related("invited_by")[:INLINE_ROWS]
        )
        for invitation in invitations:
            invitation.state_badge = state_badge(invitation.state)
        invitations_url = (
            reverse("admin:accounts_invitation_changelist") + f"?organization__id__exact={organization.pk}"
        )
    if _may_view(site, request, AlertSent):
        alerts = list(AlertSent.objects.filter(organization=organization)[:INLINE_ROWS])
        alerts_url = reverse("admin:accounts_alertsent_changelist") + f"?organization__id__exact={organization.pk}"
    return MembershipsSection(invitations, invitations_url, alerts, alerts_url)


def _may_view(site: admin.AdminSite, request: HttpRequest, model: type) -> bool:
    model_admin = registered_admin(site, model)
    return model_admin is not None and model_admin.has_view_permission(request)
