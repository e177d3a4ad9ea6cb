"""Staff pages for OAuth (issue 13): the registered MCP clients (block / unblock) and developers' grants (revoke).

Every write goes through `oauth.grants` with `actor=request.user` (history included). Tokens are never
shown: django-oauth-toolkit's own token and code admins are replaced by `HiddenAdmin` (settings
`OAUTH2_PROVIDER[*_ADMIN_CLASS]`), which staff cannot open.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.admin.base import ServiceAdmin
from oauth import grants
from oauth.models import Grant


class HiddenAdmin(admin.ModelAdmin):
    """django-oauth-toolkit's tokens, codes and ID tokens: not in the admin at all (tokens are never shown)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ClientAdmin(ServiceAdmin):
    """Registered OAuth clients (django-oauth-toolkit's application model, `oauth.Client`)."""

    list_display = ("name", "client_id", "registration_source", "redirect_uris", "created", "blocked_at")
    list_filter = ("registration_source",)
    search_fields = ("name",)
    readonly_fields = (
        "name",
        "client_id",
        "client_type",
        "authorization_grant_type",
        "redirect_uris",
        "registration_source",
        "created",
        "updated",
        "blocked_at",
    )
    fields = readonly_fields
    actions = ["block", "unblock"]
    # django-oauth-toolkit's `get_absolute_url` points at its own management pages, which Hotcross does not serve.
    view_on_site = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Block (no more sign-ins; every token of the client ends)", permissions=["change"])
    def block(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = [c for c in queryset if grants.block_client(client=c, actor=request.user)]
        self.message_user(request, f"Blocked {len(done)} client(s).", messages.SUCCESS)

    @admin.action(description="Unblock", permissions=["change"])
    def unblock(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = [c for c in queryset if grants.unblock_client(client=c, actor=request.user)]
        self.message_user(request, f"Unblocked {len(done)} client(s).", messages.SUCCESS)


@admin.register(Grant)
class GrantAdmin(ServiceAdmin):
    """Each developer's grants to OAuth clients: client, created, last used; revoke one or several."""

    list_display = ("developer", "client", "created_at", "last_used_at", "revoked_at")
    list_filter = ("client",)
    extra_lookups = ("developer__id__exact", "developer")
    search_fields = ("developer__email",)
    list_select_related = ("developer", "client")
    readonly_fields = ("developer", "client", "created_at", "last_used_at", "revoked_at")
    fields = readonly_fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke (the client's tokens stop working)", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = [g for g in queryset if grants.revoke_grant(grant=g, actor=request.user)]
        self.message_user(request, f"Revoked {len(done)} grant(s).", messages.SUCCESS)
