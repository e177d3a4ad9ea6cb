"""The developers listed on an organization's admin page: read-only, in seat order, capped so that a huge
organization's page stays fast (the rest are one click away in the developer list)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import display_for_value
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin.display import state_badge
from accounts.models import Developer

# Developers listed on an organization's page; the rest are one click away in the developer list.
INLINE_DEVELOPERS = 100


class _CappedInlineFormSet(BaseInlineFormSet):
    """Shows the first `INLINE_DEVELOPERS` developers in seat order, so a huge organization's page stays fast."""

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_capped"):
            self._capped = super().get_queryset()[:INLINE_DEVELOPERS]
        return self._capped


class DeveloperInline(admin.TabularInline):
    """Read-only: keys change only through the developer actions, and the hash is never shown."""

    model = Developer
    formset = _CappedInlineFormSet
    # Django's tabular inline without the line above each row that repeated the email next to a "View" link: the
    # email column links to the developer's page instead.
    template = "admin/accounts/organization/developers_inline.html"
    fields = ("email_link", "full_name", "role", "api_key_prefix", "last_used", "key_state", "seat")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = f"developers (in seat order; the first {INLINE_DEVELOPERS} are listed)"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = Developer.objects.with_seat_rank().select_related("organization").in_seat_order()
        if not self.has_view_or_change_permission(request):
            return queryset.none()
        return queryset

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="email")
    def email_link(self, obj: Developer) -> str:
        # Whoever sees this inline may view developers, and so open their pages.
        return format_html('<a href="{}">{}</a>', reverse("admin:accounts_developer_change", args=[obj.pk]), obj.email)

    @admin.display(description="name")
    def full_name(self, obj: Developer) -> str:
        return obj.full_name or "—"

    @admin.display(description="last used")
    def last_used(self, obj: Developer) -> str:
        return display_for_value(obj.api_key_last_used_at, "never")

    @admin.display(description="key")
    def key_state(self, obj: Developer) -> str:
        return state_badge(obj.key_state)

    @admin.display(description="seat")
    def seat(self, obj: Developer) -> str:
        if not obj.holds_seat:
            return "—"
        if obj.beyond_seat_limit:
            return format_html('<span class="hc-flag">{}</span>', "over the limit: refused")
        return f"{obj.seat_rank} of {obj.organization.max_seats}"
