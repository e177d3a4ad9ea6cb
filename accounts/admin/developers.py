"""Developers in the back office: the list, the add flow that shows the new key once, the rotate and revoke buttons,
the role (the one field edited in place, through `services.set_role`), and the actions revoke, rotate, deactivate,
activate and key expiry."""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Sequence
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.views.decorators.debug import sensitive_variables

from accounts import services
from accounts.admin.base import ServiceAdmin, YesNoFilter, record_fieldsets
from accounts.admin.display import organization_link, state_badge
from accounts.admin.forms import DeveloperAddForm, KeyExpiryForm, RotateKeyForm
from accounts.admin.pages import key_page
from accounts.exceptions import AccountsError, KeyChanged
from accounts.models import Developer

MAX_ROTATIONS = 50
# Add-form submissions remembered per session (token → developer id), so a re-sent add says "already added".
REMEMBERED_ADDS = 20
ADD_SUBMISSION_FIELD = "_hc_add_submission"
SESSION_ADDED_DEVELOPERS = "hotcross_developers_added"


class OrganizationStatusFilter(admin.ChoicesFieldListFilter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "organization status"


class RevokedFilter(YesNoFilter):
    title = "key revoked"
    parameter_name = "revoked"

    def condition(self) -> Q:
        return Q(api_key_revoked_at__isnull=False)


@admin.register(Developer)
class DeveloperAdmin(ServiceAdmin):
    add_form = DeveloperAddForm
    add_fieldsets = ((None, {"fields": ("organization", "email", "first_name", "last_name")}),)
    fieldsets = (
        (None, {"fields": ("email", "first_name", "last_name", "organization_link", "role", "is_active")}),
        (
            "API key",
            {
                "fields": (
                    "state",
                    "api_key_prefix",
                    "api_key_created_at",
                    "last_used",
                    "expires",
                    "api_key_revoked_at",
                    "old_key",
                    "seat_claimed_at",
                )
            },
        ),
        ("Record", {"fields": ("created_at", "updated_at", "legacy_customer_id")}),
    )
    # Only the role is edited in place (`services.set_role`): keys and state change through actions and buttons.
    readonly_fields = tuple(field for field in flatten_fieldsets(fieldsets) if field != "role")
    autocomplete_fields = ("organization",)
    list_display = ("email", "full_name", "organization_link", "role", "api_key_prefix", "last_used", "state")
    list_filter = (("organization__subscription_status", OrganizationStatusFilter), "role", "is_active", RevokedFilter)
    extra_lookups = ("organization__id__exact",)  # an organization's "developers" link
    search_fields = ("email", "first_name", "last_name", "api_key_prefix")
    search_help_text = "Email, name or key prefix (hc_live_…)."
    list_select_related = ("organization",)
    # Emails are unique ignoring case, and that unique index on lower(email) serves this order: no sort of every row.
    ordering = (Lower("email"),)
    list_per_page = 50
    show_full_result_count = False
    actions = ["revoke_keys", "rotate_keys", "deactivate", "activate", "set_key_expiry", "sign_out_everywhere"]

    class Media:
        css = {"all": ["accounts/admin.css"]}

    def get_fieldsets(self, request: HttpRequest, obj: Developer | None = None) -> Any:
        return self.add_fieldsets if obj is None else record_fieldsets(super().get_fieldsets(request, obj), obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Developer | None = None) -> Sequence[str]:
        return () if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Developer | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/rotate-key/",
                self.admin_site.admin_view(self.rotate_key_view),
                name="accounts_developer_rotate_key",
            ),
            path(
                "<path:object_id>/revoke-key/",
                self.admin_site.admin_view(self.revoke_key_view),
                name="accounts_developer_revoke_key",
            ),
            *super().get_urls(),
        ]

    # --- columns ---

    @admin.display(description="name", ordering="last_name")
    def full_name(self, obj: Developer) -> str:
        return obj.full_name or "—"

    @admin.display(description="organization", ordering="organization__name")
    def organization_link(self, obj: Developer) -> str:
        return organization_link(obj.organization_id, obj.organization.name)

    @admin.display(description="state")
    def state(self, obj: Developer) -> str:
        return state_badge(obj.key_state)

    # Empty dates say what they mean, as on the organization page ("never", not "-").
    @admin.display(description="key last used", ordering="api_key_last_used_at", empty_value="never")
    def last_used(self, obj: Developer) -> datetime.datetime | None:
        return obj.api_key_last_used_at

    @admin.display(description="key expires", empty_value="never")
    def expires(self, obj: Developer) -> datetime.datetime | None:
        return obj.api_key_expires_at

    @admin.display(description="old key works until", empty_value="— (no old key in a grace period)")
    def old_key(self, obj: Developer) -> datetime.datetime | None:
        """The key replaced by a rotation with a grace period, while it still works (one query, this page only)."""
        return Developer.objects.with_old_key_grace().filter(pk=obj.pk).values_list("old_key_works_until", flat=True)[0]

    # --- the add flow: create through the service, then show the key once ---

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        # Each add form carries a one-time token. A browser reload of the key page re-sends the form: the token is
        # then known (response_add remembered it with the new developer's id, never the key), so the answer is
        # "already added, the key is not shown again" instead of a confusing "email already exists" form error.
        token = request.POST.get(ADD_SUBMISSION_FIELD, "") if request.method == "POST" else ""
        if not 0 < len(token) <= 64:
            token = ""
        if token and self.has_add_permission(request):
            developer_id = request.session.get(SESSION_ADDED_DEVELOPERS, {}).get(token)
            developer = (
                Developer.objects.select_related("organization").filter(pk=developer_id).first()
                if developer_id
                else None
            )
            if developer is not None:
                return key_page(
                    self, request, [], title=f"{developer.email} was already added", already_added=developer
                )
        extra_context = {**(extra_context or {}), "hc_add_submission": token or secrets.token_urlsafe(16)}
        return super().add_view(request, form_url, extra_context)

    @sensitive_variables("plain_key")
    def save_model(self, request: HttpRequest, obj: Developer, form: Any, change: bool) -> None:
        if change:
            # Only the role is edited in place (the last owner stays one); keys and state change through actions.
            if "role" in form.changed_data:
                current = Developer.objects.get(pk=obj.pk)
                self.through_service(
                    services.set_role, developer=current, role=form.cleaned_data["role"], actor=request.user
                )
            return
        data = form.cleaned_data
        created, plain_key = self.through_service(
            services.add_developer,
            organization=data["organization"],
            email=data["email"],
            first_name=data.get("first_name", ""),
            last_name=data.get("last_name", ""),
            actor=request.user,
        )
        for field in Developer._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        request._hotcross_issued_keys = [(obj, plain_key)]

    def response_add(self, request: HttpRequest, obj: Developer, post_url_continue: str | None = None) -> HttpResponse:
        issued = getattr(request, "_hotcross_issued_keys", None)
        if not issued:
            return super().response_add(request, obj, post_url_continue)
        token = request.POST.get(ADD_SUBMISSION_FIELD, "")
        if 0 < len(token) <= 64:
            added = {**request.session.get(SESSION_ADDED_DEVELOPERS, {}), token: str(obj.pk)}
            request.session[SESSION_ADDED_DEVELOPERS] = dict(list(added.items())[-REMEMBERED_ADDS:])
        return key_page(self, request, issued, title=f"API key for {obj.email}", added=True)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        extra_context = {
            **(extra_context or {}),
            # Only the role is edited in place (saved by staff who may change developers): keys and state change
            # through the actions and buttons.
            "show_save": obj is not None and self.has_change_permission(request, obj),
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        if obj is not None:
            extra_context["can_rotate"] = self.has_rotate_key_permission(request, obj)
            extra_context["can_revoke"] = self.has_revoke_key_permission(request, obj) and obj.holds_seat
        return super().change_view(request, object_id, form_url, extra_context)

    # --- per-developer pages (object tools on the change page) ---

    def rotate_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        developer = self._developer_or_404(request, object_id)
        if not self.has_rotate_key_permission(request, developer):
            raise PermissionDenied
        return self._rotate(request, [developer], action=None) or self._back_to(developer)

    def revoke_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        developer = self._developer_or_404(request, object_id)
        if not self.has_revoke_key_permission(request, developer):
            raise PermissionDenied
        return self._revoke(request, [developer], action=None) or self._back_to(developer)

    def _developer_or_404(self, request: HttpRequest, object_id: str) -> Developer:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No developer has the id {object_id}.")
        return obj

    def _back_to(self, developer: Developer) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:accounts_developer_change", args=[developer.pk]))

    # --- actions ---

    @admin.action(description="Revoke key…", permissions=["revoke_key"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._revoke(request, queryset, action="revoke_keys")

    @admin.action(description="Rotate key (new key shown once)…", permissions=["rotate_key"])
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._rotate(request, queryset, action="rotate_keys")

    @admin.action(description="Sign out of every OAuth client", permissions=["change"])
    def sign_out_everywhere(self, request: HttpRequest, queryset: QuerySet) -> None:
        ended = sum(services.sign_out_everywhere(developer=d, actor=request.user) for d in queryset)
        self.message_user(request, f"Signed out of every OAuth client: {ended} grant(s) revoked.", messages.SUCCESS)

    @admin.action(description="Deactivate (frees the seat)", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = self.each(
            request,
            queryset,
            lambda d: services.deactivate_developer(developer=d, actor=request.user),
            name=_not_done_for,
        )
        self.report(request, "Deactivated", sum(changed for _, changed in done), "developer")

    @admin.action(description="Activate (takes a seat)", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = self.each(
            request,
            queryset.select_related("organization"),
            lambda d: services.activate_developer(developer=d, actor=request.user),
            name=_not_done_for,
        )
        self.report(request, "Activated", sum(changed for _, changed in done), "developer")

    @admin.action(description="Set key expiry…", permissions=["change"])
    def set_key_expiry(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def perform(developers: list[Developer], data: dict[str, Any]) -> None:
            expires_at = data["expires_at"]
            done = self.each(
                request,
                developers,
                lambda d: services.set_key_expiry(developer=d, expires_at=expires_at, actor=request.user),
                name=_not_done_for,
            )
            when = f"{expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "never"
            self.report(request, "Keys of", len(done), "developer", f" expire {when}.")

        return self.confirmed_action(
            request,
            queryset,
            perform=perform,
            title="Set key expiry",
            question="The current key of each developer stops working at this time. Rotating a key clears it.",
            submit="Set expiry",
            action="set_key_expiry",
            form_class=KeyExpiryForm,
        )

    # --- the work behind actions and buttons ---

    def _revoke(self, request: HttpRequest, developers: QuerySet | list, *, action: str | None) -> HttpResponse | None:
        def perform(chosen: list[Developer], data: dict[str, Any]) -> None:
            revoked = sum(services.revoke_key(developer=d, actor=request.user) for d in chosen)
            self.report(request, "Revoked", revoked, "key")

        return self.confirmed_action(
            request,
            developers,
            perform=perform,
            title="Revoke key?",
            question="The key stops working at once, on every transport, and the seat is freed. "
            "The developer needs a new key (rotate) to work again.",
            details=_key_line,
            submit="Yes, revoke",
            action=action,
            danger=True,
        )

    def _rotate(self, request: HttpRequest, developers: QuerySet | list, *, action: str | None) -> HttpResponse | None:
        @sensitive_variables()
        def perform(chosen: list[Developer], data: dict[str, Any]) -> HttpResponse | None:
            issued: list[tuple[Developer, str]] = []
            for developer in chosen:
                # The key each confirmation was given for: a replayed POST (reload, back button, double click) finds
                # a different key and rotates nothing, so it cannot show a key again.
                expected = request.POST.get(f"key_version_{developer.pk}", "")
                try:
                    issued.append(
                        services.rotate_key(
                            developer=developer, actor=request.user, if_key_version=expected, grace=data["grace"]
                        )
                    )
                except KeyChanged as exc:
                    self.message_user(request, exc.message, messages.WARNING)
                except AccountsError as exc:
                    self.message_user(request, f"{_not_done_for(developer)}: {exc.message}", messages.ERROR)
            if not issued:
                return None
            title = f"New API key for {issued[0][0].email}" if len(issued) == 1 else f"{len(issued)} new API keys"
            return key_page(self, request, issued, title=title, old_keys_until=_old_keys_until(issued))

        count = developers.count() if isinstance(developers, QuerySet) else len(developers)
        return self.confirmed_action(
            request,
            developers,
            perform=perform,
            title="Rotate key?",
            question=("The developer gets a new key" if count == 1 else "Each developer gets a new key")
            + ", shown once on the next page; the current key stops working at once, or after the grace period "
            "below. Re-keying a revoked developer takes a seat.",
            details=_key_line,
            hidden=[(f"key_version_{d.pk}", d.key_version) for d in developers[:MAX_ROTATIONS]],
            submit="Yes, rotate",
            action=action,
            form_class=RotateKeyForm,
            danger=True,
            limit=MAX_ROTATIONS,
        )


def _key_line(developer: Developer) -> str:
    return f"{developer.email}: key {developer.api_key_prefix or '—'}… ({developer.key_state})"


def _not_done_for(developer: Developer) -> str:
    # Messages must not start with the email: the admin capitalises the first letter of every message.
    return f"Nothing was done for {developer.email}"


def _old_keys_until(issued: list[tuple[Developer, str]]) -> dict[Any, datetime.datetime]:
    """Developer id → when the key just replaced stops working, for those rotated with a grace period (one query)."""
    return dict(
        Developer.objects.with_old_key_grace()
        .filter(pk__in=[developer.pk for developer, _ in issued], old_key_works_until__isnull=False)
        .values_list("pk", "old_key_works_until")
    )
