"""The staff back office: organizations, developers, keys, seats and usage in Django's admin.

Thin on purpose: every write goes through `accounts.services` with `actor=request.user`, so the rules and messages
are the command line's, and the services write the admin history (`LogEntry`). The admin's own history entries are
therefore switched off (`log_addition`/`log_change`), or each action would be recorded twice.

Shapes follow Django's own: extra admin URLs with a `TemplateResponse` and permission checks inside the view for key
rotation (like `UserAdmin.user_change_password`), and a confirmation page before destructive actions (like
`delete_selected`). Plain keys are rendered straight into the response of the request that created them, never
stored; a replayed request cannot show a key again (see `_rotate` and `DeveloperAdmin.add_view`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import display_for_value, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.forms import Form
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from accounts import selectors, services
from accounts.admin_chart import usage_chart
from accounts.admin_forms import DeveloperAddForm, KeyExpiryForm, StatusForm
from accounts.exceptions import AccountsError, KeyChanged
from accounts.models import Developer, Organization, SubscriptionStatus

# Above this many selected objects an action asks staff to narrow the selection: the confirmation page lists them
# all, and a key page with hundreds of keys helps nobody.
MAX_ACTION_OBJECTS = 500
MAX_ROTATIONS = 50
# Developers listed on an organization's page; the rest are one click away in the developer list.
INLINE_DEVELOPERS = 100
USAGE_DAYS = 30

REVOKE_PERMISSION = "accounts.revoke_key"
ROTATE_PERMISSION = "accounts.rotate_key"
# dj-stripe's admin pages linked from an organization's page (only for staff allowed to open them).
DJSTRIPE_LINKED_MODELS = ("customer", "subscription")
# Add-form submissions remembered per session (token → developer id), so a re-sent add says "already added".
REMEMBERED_ADDS = 20
ADD_SUBMISSION_FIELD = "_hc_add_submission"
SESSION_ADDED_DEVELOPERS = "hotcross_developers_added"

# The staff back office is this site. Without the navigation sidebar: dj-stripe registers some fifty models, and the
# sidebar listing them takes a quarter of every page, pushing the organization list's last columns off screen.
admin.site.site_header = "Hotcross back office"
admin.site.site_title = "Hotcross back office"
admin.site.index_title = "Staff back office"
admin.site.enable_nav_sidebar = False


class _ServiceRefused(Exception):
    """A service refused a save after the form validated (a lost race): roll back, say why, show the page again."""


class _ServiceHistoryMixin:
    """The services record every write in the admin history; the admin must not add a second entry."""

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> None:
        return None

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> None:
        return None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # No delete: it would bypass the services (seat bookkeeping, key-check cache, history). Revoke, deactivate
        # or set the status instead; the rows keep their history.
        return False

    def has_revoke_key_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(REVOKE_PERMISSION)

    def has_rotate_key_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(ROTATE_PERMISSION)


# --- shared pages ---------------------------------------------------------------------------------------------------


def _confirmation(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    title: str,
    question: str,
    objects: Sequence[Any],
    submit: str,
    action: str | None = None,
    form: Form | None = None,
    hidden: Iterable[tuple[str, str]] = (),
    details: Sequence[str] = (),
    danger: bool = False,
    cancel_url: str | None = None,
) -> TemplateResponse:
    """A "are you sure?" page in the style of `delete_selected`: posting it back (with `post=yes`) performs."""
    opts = model_admin.opts
    media = model_admin.media + form.media if form is not None else model_admin.media
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": opts,
        "question": question,
        "objects": objects,
        "details": details,
        "submit": submit,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "object_ids": [str(obj.pk) for obj in objects] if action else [],
        "form": form,
        "hidden": list(hidden),
        "danger": danger,
        "cancel_url": cancel_url or reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        "media": media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/accounts/confirm.html", context)


def _key_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    issued: list[tuple[Developer, str]],
    *,
    title: str,
    already_added: Developer | None = None,
) -> TemplateResponse:
    """The one page a plain key ever appears on. It is the response to the POST that made the key: nothing is
    stored, so reloading or going back cannot show it again (`already_added`: the page a re-sent add gets)."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": model_admin.opts,
        "issued": [{"developer": developer, "key": key} for developer, key in issued],
        "already_added": already_added,
        "can_rotate": already_added is not None and request.user.has_perm(ROTATE_PERMISSION),
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    response = TemplateResponse(request, "admin/accounts/developer/key_shown_once.html", context)
    add_never_cache_headers(response)
    return response


def _too_many(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, limit: int) -> bool:
    count = queryset.count()
    if count > limit:
        model_admin.message_user(
            request, f"Select at most {limit} at a time for this action ({count} selected).", messages.WARNING
        )
        return True
    return False


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- organizations --------------------------------------------------------------------------------------------------


class OverSeatLimitFilter(admin.SimpleListFilter):
    title = "over seat limit"
    parameter_name = "over_seat_limit"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() not in ("yes", "no"):
            return queryset
        # Worked out once (one pass over the seat holders), not again inside both the page query and its count.
        over = list(Organization.objects.over_seat_limit().values_list("pk", flat=True))
        return queryset.filter(pk__in=over) if self.value() == "yes" else queryset.exclude(pk__in=over)


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
    fields = ("email", "full_name", "api_key_prefix", "last_used", "key_state", "seat")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
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

    @admin.display(description="name")
    def full_name(self, obj: Developer) -> str:
        return obj.full_name or "—"

    @admin.display(description="last used")
    def last_used(self, obj: Developer) -> str:
        return display_for_value(obj.api_key_last_used_at, "never")

    @admin.display(description="key")
    def key_state(self, obj: Developer) -> str:
        return _state_badge(obj.key_state)

    @admin.display(description="seat")
    def seat(self, obj: Developer) -> str:
        if not obj.holds_seat:
            return "—"
        if obj.beyond_seat_limit:
            return format_html('<span class="hc-flag">{}</span>', "over the limit: refused")
        return f"{obj.seat_rank} of {obj.organization.max_seats}"


@admin.register(Organization)
class OrganizationAdmin(_ServiceHistoryMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "status_badge",
        "seats",
        "pricing_model",
        "stripe_link",
        "developers",
        "last_activity",
        "created_at",
    )
    list_filter = ("subscription_status", "pricing_model", OverSeatLimitFilter)
    search_fields = ("name", "=stripe_customer_id")  # and developers' emails: see get_search_results
    search_help_text = "Name, Stripe customer id (exact) or any developer's email."
    list_per_page = 50
    show_full_result_count = False
    actions = ["set_status", "revoke_all_keys"]
    inlines = [DeveloperInline]
    fieldsets = (
        (None, {"fields": ("name", "billing_email", "pricing_model")}),
        (
            "Subscription and seats",
            {
                "fields": (
                    "subscription_status",
                    "max_seats",
                    "seats",
                    "stripe_customer_id",
                    "subscription_id",
                    "stripe_links",
                )
            },
        ),
        ("History", {"fields": ("last_activity", "created_at", "updated_at", "legacy_customer_id")}),
    )
    add_fieldsets = (
        (None, {"fields": ("name", "billing_email", "pricing_model")}),
        ("Subscription and seats", {"fields": ("subscription_status", "max_seats", "stripe_customer_id")}),
    )
    readonly_fields = (
        "seats",
        "subscription_id",
        "stripe_links",
        "last_activity",
        "created_at",
        "updated_at",
        "legacy_customer_id",
    )

    class Media:
        css = {"all": ["accounts/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.organizations_for_admin()

    def get_fieldsets(self, request: HttpRequest, obj: Organization | None = None) -> Any:
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # The whole term, matched against the name, the exact Stripe id or any developer's email. Done by hand so
        # the developer match is one semi-join, not the DISTINCT over joined rows Django builds for a to-many field.
        term = search_term.strip()
        if not term:
            return queryset, False
        by_developer = Developer.objects.filter(email__icontains=term).values("organization_id")
        return queryset.filter(Q(name__icontains=term) | Q(stripe_customer_id=term) | Q(pk__in=by_developer)), False

    def get_inlines(self, request: HttpRequest, obj: Organization | None) -> list:
        return self.inlines if obj is not None else []

    # --- columns and read-only fields ---

    @admin.display(description="status", ordering="subscription_status")
    def status_badge(self, obj: Organization) -> str:
        return _status_badge(obj.subscription_status, obj.get_subscription_status_display())

    @admin.display(description="seats used / max", ordering="seats_used")
    def seats(self, obj: Organization) -> str:
        used = getattr(obj, "seats_used", None)
        if used is None:
            return "—"
        if used > obj.max_seats:
            return format_html(
                '{} / {} <span class="hc-flag" title="The {} newest seat holders are refused.">over limit</span>',
                used,
                obj.max_seats,
                used - obj.max_seats,
            )
        return f"{used} / {obj.max_seats}"

    @admin.display(description="Stripe customer", ordering="stripe_customer_id")
    def stripe_link(self, obj: Organization) -> str:
        if not obj.stripe_customer_id:
            return "—"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>',
            stripe_dashboard_url(obj.stripe_customer_id),
            obj.stripe_customer_id,
        )

    @admin.display(description="developers", ordering="developer_count")
    def developers(self, obj: Organization) -> str:
        url = reverse("admin:accounts_developer_changelist") + f"?organization__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, getattr(obj, "developer_count", 0))

    @admin.display(description="last activity", ordering="last_activity")
    def last_activity(self, obj: Organization) -> str:
        # Formatted here: a read-only field on the change page would print a bare datetime, or "None".
        return display_for_value(getattr(obj, "last_activity", None), "never")

    @admin.display(description="Stripe")
    def stripe_links(self, obj: Organization) -> str:
        # Which dj-stripe pages the viewer may open is set per request by render_change_form; none by default.
        viewable = getattr(obj, "_hc_djstripe_viewable", ())
        links = []
        if obj.stripe_customer_id:
            links.append(("Stripe dashboard", stripe_dashboard_url(obj.stripe_customer_id), True))
            if "customer" in viewable:
                links.extend(_djstripe_link("customer", obj.stripe_customer_id, "dj-stripe customer"))
        if obj.subscription_id and "subscription" in viewable:
            links.extend(_djstripe_link("subscription", obj.subscription_id, "dj-stripe subscription"))
        if not links:
            return "—"
        parts = [
            format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, label)
            if external
            else format_html('<a href="{}">{}</a>', url, label)
            for label, url, external in links
        ]
        return format_html(" · ".join(["{}"] * len(parts)), *parts)

    # --- saving: every write through the services ---

    def save_model(self, request: HttpRequest, obj: Organization, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            if not change:
                created = services.create_organization(
                    name=data["name"],
                    stripe_customer_id=data.get("stripe_customer_id"),
                    max_seats=data["max_seats"],
                    subscription_status=data["subscription_status"],
                    pricing_model=data["pricing_model"],
                    billing_email=data.get("billing_email", ""),
                    actor=request.user,
                )
                for field in Organization._meta.concrete_fields:
                    setattr(obj, field.attname, getattr(created, field.attname))
                obj._state.adding = False
                return
            current = Organization.objects.get(pk=obj.pk)
            descriptive = {
                name: data[name]
                for name in ("name", "stripe_customer_id", "billing_email", "pricing_model")
                if name in form.changed_data
            }
            if descriptive:
                services.update_organization(organization=current, actor=request.user, **descriptive)
            if "subscription_status" in form.changed_data:
                services.set_status(organization=current, status=data["subscription_status"], actor=request.user)
            if "max_seats" in form.changed_data:
                services.set_seats(organization=current, max_seats=data["max_seats"], actor=request.user)
        except AccountsError as exc:
            raise _ServiceRefused(exc.message) from exc

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if request.method == "POST" and object_id and request.POST.get("_confirm_seats") != "yes":
            confirmation = self._seats_confirmation(request, object_id)
            if confirmation is not None:
                return confirmation
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _ServiceRefused as exc:
            # The atomic block around the view has rolled everything back.
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def _seats_confirmation(self, request: HttpRequest, object_id: str) -> TemplateResponse | None:
        """Lowering seats below those in use needs a second, explicit yes (the newest holders lose access)."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_change_permission(request, obj):
            return None
        form = self.get_form(request, obj, change=True)(request.POST, request.FILES, instance=obj)
        if not form.is_valid() or "max_seats" not in form.changed_data:
            return None
        new_seats = form.cleaned_data["max_seats"]
        if new_seats >= obj.seats_used:
            return None
        losing = list(selectors.seat_holders_beyond(obj, new_seats)[:MAX_ACTION_OBJECTS])
        hidden = [
            (name, value)
            for name, values in request.POST.lists()
            if name not in ("csrfmiddlewaretoken", "_confirm_seats")
            for value in values
        ]
        hidden.append(("_confirm_seats", "yes"))
        refused = obj.seats_used - new_seats
        if new_seats == 0:
            keep = "no one keeps access:"
        elif new_seats == 1:
            keep = "the earliest seat holder keeps access and"
        else:
            keep = f"the earliest {new_seats} seat holders keep access and"
        return _confirmation(
            self,
            request,
            title="Lower seats below those in use?",
            question=(
                f"{obj.name} uses {_plural(obj.seats_used, 'seat')}. With {_plural(new_seats, 'seat')}, {keep} "
                f"{'this developer is' if refused == 1 else f'these {refused} developers are'} refused until seats "
                "are added or freed. The organization is flagged as over its seat limit."
            ),
            objects=losing,
            submit=f"Yes, set {new_seats} seats",
            hidden=hidden,
            danger=True,
            cancel_url=request.get_full_path(),
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Organization | None = None,
    ) -> HttpResponse:
        if obj is not None and change:
            # The Support group cannot open dj-stripe's pages (see migration 0003): do not offer dead links.
            obj._hc_djstripe_viewable = {
                m for m in DJSTRIPE_LINKED_MODELS if request.user.has_perm(f"djstripe.view_{m}")
            }
            first_day, rows = selectors.usage_per_developer_per_day(obj, days=USAGE_DAYS)
            context["usage_chart"] = usage_chart(first_day, rows, days=USAGE_DAYS)
            context["usage_days"] = USAGE_DAYS
            context["developers_url"] = (
                reverse("admin:accounts_developer_changelist") + f"?organization__id__exact={obj.pk}"
            )
            context["add_developer_url"] = (
                reverse("admin:accounts_developer_add") + f"?organization={obj.pk}"
                if self.admin_site.is_registered(Developer) and request.user.has_perm("accounts.add_developer")
                else None
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- actions ---

    @admin.action(description="Set subscription status…", permissions=["change"])
    def set_status(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        if _too_many(self, request, queryset, MAX_ACTION_OBJECTS):
            return None
        form = StatusForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_bound and form.is_valid():
            status = form.cleaned_data["status"]
            changed = 0
            for organization in queryset:
                before = organization.subscription_status
                services.set_status(organization=organization, status=status, actor=request.user)
                changed += before != status
            self.message_user(
                request, f"Status set to {status} on {_plural(changed, 'organization')}.", messages.SUCCESS
            )
            return None
        return _confirmation(
            self,
            request,
            title="Set the subscription status",
            question="Stripe normally sets the status; a manual change holds until Stripe's next event for the "
            "subscription. Keys work only while the status is "
            f"{' or '.join(settings.HOTCROSS_ALLOWED_STATUSES)}.",
            objects=list(queryset),
            submit="Set status",
            action="set_status",
            form=form,
        )

    @admin.action(description="Revoke every key of the selected organizations…", permissions=["revoke_key"])
    def revoke_all_keys(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        if _too_many(self, request, queryset, MAX_ACTION_OBJECTS):
            return None
        if request.POST.get("post") == "yes":
            revoked = services.revoke_all_keys(organizations=queryset, actor=request.user)
            self.message_user(request, f"Revoked {_plural(revoked, 'key')}.", messages.SUCCESS)
            return None
        organizations = list(queryset)
        return _confirmation(
            self,
            request,
            title="Revoke every key?",
            question="Every developer key of these organizations stops working at once, on every transport. "
            "Developers need a new key (rotate) to work again. This cannot be undone.",
            objects=organizations,
            details=[f"{org.name}: {_plural(org.seats_used, 'seat')} in use" for org in organizations],
            submit="Yes, revoke every key",
            action="revoke_all_keys",
            danger=True,
        )


# --- developers -----------------------------------------------------------------------------------------------------


class OrganizationStatusFilter(admin.ChoicesFieldListFilter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "organization status"


class RevokedFilter(admin.SimpleListFilter):
    title = "key revoked"
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(api_key_revoked_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(api_key_revoked_at__isnull=True)
        return queryset


@admin.register(Developer)
class DeveloperAdmin(_ServiceHistoryMixin, admin.ModelAdmin):
    add_form = DeveloperAddForm
    add_fieldsets = ((None, {"fields": ("organization", "email", "first_name", "last_name")}),)
    fieldsets = (
        (None, {"fields": ("email", "first_name", "last_name", "organization_link", "is_active")}),
        (
            "API key",
            {
                "fields": (
                    "state",
                    "api_key_prefix",
                    "api_key_created_at",
                    "api_key_last_used_at",
                    "api_key_expires_at",
                    "api_key_revoked_at",
                    "seat_claimed_at",
                )
            },
        ),
        ("History", {"fields": ("created_at", "updated_at", "legacy_customer_id")}),
    )
    readonly_fields = (
        "email",
        "first_name",
        "last_name",
        "organization_link",
        "is_active",
        "state",
        "api_key_prefix",
        "api_key_created_at",
        "api_key_last_used_at",
        "api_key_expires_at",
        "api_key_revoked_at",
        "seat_claimed_at",
        "created_at",
        "updated_at",
        "legacy_customer_id",
    )
    autocomplete_fields = ("organization",)
    list_display = ("email", "full_name", "organization_link", "api_key_prefix", "api_key_last_used_at", "state")
    list_filter = (("organization__subscription_status", OrganizationStatusFilter), "is_active", RevokedFilter)
    search_fields = ("email", "first_name", "last_name", "api_key_prefix")
    search_help_text = "Email, name or key prefix (hc_live_…)."
    list_select_related = ("organization",)
    # Emails are unique ignoring case, and that unique index on lower(email) serves this order: no sort of every row.
    ordering = (Lower("email"),)
    list_per_page = 50
    show_full_result_count = False
    actions = ["revoke_keys", "rotate_keys", "deactivate", "activate", "set_key_expiry"]

    class Media:
        css = {"all": ["accounts/admin.css"]}

    def get_fieldsets(self, request: HttpRequest, obj: Developer | None = None) -> Any:
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Developer | None = None) -> Sequence[str]:
        return () if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Developer | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = type("DeveloperAddForm", (self.add_form,), {"actor": request.user})
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
        url = reverse("admin:accounts_organization_change", args=[obj.organization_id])
        return format_html('<a href="{}">{}</a>', url, obj.organization.name)

    @admin.display(description="state")
    def state(self, obj: Developer) -> str:
        return _state_badge(obj.key_state)

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
                return _key_page(
                    self, request, [], title=f"{developer.email} was already added", already_added=developer
                )
        extra_context = {**(extra_context or {}), "hc_add_submission": token or secrets.token_urlsafe(16)}
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Developer, form: Any, change: bool) -> None:
        # The add form created the developer while validating (see DeveloperAddForm); the change form has no
        # editable field. Nothing is saved here.
        if not change:
            request._hotcross_issued_keys = [(obj, form.plain_key)]

    def response_add(self, request: HttpRequest, obj: Developer, post_url_continue: str | None = None) -> HttpResponse:
        issued = getattr(request, "_hotcross_issued_keys", None)
        if not issued:
            return super().response_add(request, obj, post_url_continue)
        token = request.POST.get(ADD_SUBMISSION_FIELD, "")
        if 0 < len(token) <= 64:
            added = {**request.session.get(SESSION_ADDED_DEVELOPERS, {}), token: str(obj.pk)}
            request.session[SESSION_ADDED_DEVELOPERS] = dict(list(added.items())[-REMEMBERED_ADDS:])
        return _key_page(self, request, issued, title=f"API key for {obj.email}")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            # Nothing on this page is edited in place: keys and state change through the actions and buttons.
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            extra_context["can_rotate"] = self.has_rotate_key_permission(request, obj)
            extra_context["can_revoke"] = self.has_revoke_key_permission(request, obj) and obj.holds_seat
        return super().change_view(request, object_id, form_url, extra_context)

    # --- per-developer pages (object tools on the change page) ---

    def _developer_or_404(self, request: HttpRequest, object_id: str) -> Developer:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No developer has the id {object_id}.")
        return obj

    def rotate_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        developer = self._developer_or_404(request, object_id)
        if not self.has_rotate_key_permission(request, developer):
            raise PermissionDenied
        if request.method == "POST" and request.POST.get("post") == "yes":
            response = self._rotate(request, [developer])
            return response or HttpResponseRedirect(reverse("admin:accounts_developer_change", args=[developer.pk]))
        return self._rotate_confirmation(request, [developer], action=None)

    def revoke_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        developer = self._developer_or_404(request, object_id)
        if not self.has_revoke_key_permission(request, developer):
            raise PermissionDenied
        if request.method == "POST" and request.POST.get("post") == "yes":
            self._revoke(request, [developer])
            return HttpResponseRedirect(reverse("admin:accounts_developer_change", args=[developer.pk]))
        return self._revoke_confirmation(request, [developer], action=None)

    # --- actions ---

    @admin.action(description="Revoke key…", permissions=["revoke_key"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        if _too_many(self, request, queryset, MAX_ACTION_OBJECTS):
            return None
        if request.POST.get("post") == "yes":
            self._revoke(request, queryset)
            return None
        return self._revoke_confirmation(request, list(queryset), action="revoke_keys")

    @admin.action(description="Rotate key (new key shown once)…", permissions=["rotate_key"])
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        if _too_many(self, request, queryset, MAX_ROTATIONS):
            return None
        if request.POST.get("post") == "yes":
            return self._rotate(request, queryset)
        return self._rotate_confirmation(request, list(queryset), action="rotate_keys")

    @admin.action(description="Deactivate (frees the seat)", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = sum(services.deactivate_developer(developer=d, actor=request.user) for d in queryset)
        self.message_user(request, f"Deactivated {_plural(done, 'developer')}.", messages.SUCCESS)

    @admin.action(description="Activate (takes a seat)", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for developer in queryset.select_related("organization"):
            try:
                done += services.activate_developer(developer=developer, actor=request.user)
            except AccountsError as exc:
                self.message_user(request, f"{developer.email}: {exc.message}", messages.ERROR)
        self.message_user(request, f"Activated {_plural(done, 'developer')}.", messages.SUCCESS)

    @admin.action(description="Set key expiry…", permissions=["change"])
    def set_key_expiry(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        if _too_many(self, request, queryset, MAX_ACTION_OBJECTS):
            return None
        form = KeyExpiryForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_bound and form.is_valid():
            expires_at = form.cleaned_data["expires_at"]
            count = 0
            for developer in queryset:
                try:
                    services.set_key_expiry(developer=developer, expires_at=expires_at, actor=request.user)
                    count += 1
                except AccountsError as exc:
                    self.message_user(request, f"{developer.email}: {exc.message}", messages.ERROR)
            when = f"{expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "never"
            self.message_user(request, f"Keys of {_plural(count, 'developer')} expire {when}.", messages.SUCCESS)
            return None
        return _confirmation(
            self,
            request,
            title="Set key expiry",
            question="The current key of each developer stops working at this time. Rotating a key clears it.",
            objects=list(queryset),
            submit="Set expiry",
            action="set_key_expiry",
            form=form,
        )

    # --- the work behind actions and buttons ---

    def _revoke_confirmation(self, request: HttpRequest, developers: list, *, action: str | None) -> TemplateResponse:
        return _confirmation(
            self,
            request,
            title="Revoke key?",
            question="The key stops working at once, on every transport, and the seat is freed. "
            "The developer needs a new key (rotate) to work again.",
            objects=developers,
            details=[f"{d.email}: key {d.api_key_prefix or '—'}… ({d.key_state})" for d in developers],
            submit="Yes, revoke",
            action=action,
            danger=True,
        )

    def _revoke(self, request: HttpRequest, developers: Iterable[Developer]) -> None:
        revoked = sum(services.revoke_key(developer=d, actor=request.user) for d in developers)
        self.message_user(request, f"Revoked {_plural(revoked, 'key')}.", messages.SUCCESS)

    def _rotate_confirmation(self, request: HttpRequest, developers: list, *, action: str | None) -> TemplateResponse:
        return _confirmation(
            self,
            request,
            title="Rotate key?",
            question="Each developer gets a new key, shown once on the next page; the current key stops working "
            "at once. Re-keying a revoked developer takes a seat.",
            objects=developers,
            details=[f"{d.email}: key {d.api_key_prefix or '—'}… ({d.key_state})" for d in developers],
            hidden=[(f"key_version_{d.pk}", d.key_version) for d in developers],
            submit="Yes, rotate",
            action=action,
            danger=True,
        )

    def _rotate(self, request: HttpRequest, developers: Iterable[Developer]) -> TemplateResponse | None:
        issued: list[tuple[Developer, str]] = []
        for developer in developers:
            # The key each confirmation was given for: a replayed POST (reload, back button, double click) finds a
            # different key and rotates nothing, so it cannot show a key again.
            expected = request.POST.get(f"key_version_{developer.pk}", "")
            try:
                rotated, key = services.rotate_key(developer=developer, actor=request.user, if_key_version=expected)
            except KeyChanged as exc:
                self.message_user(request, exc.message, messages.WARNING)
                continue
            except AccountsError as exc:
                self.message_user(request, f"{developer.email}: {exc.message}", messages.ERROR)
                continue
            issued.append((rotated, key))
        if not issued:
            return None
        title = f"New API key for {issued[0][0].email}" if len(issued) == 1 else f"{len(issued)} new API keys"
        return _key_page(self, request, issued, title=title)


# --- helpers ---------------------------------------------------------------------------------------------------------

_BADGE_CLASS = {
    SubscriptionStatus.ACTIVE: "ok",
    SubscriptionStatus.TRIALING: "info",
    SubscriptionStatus.PAST_DUE: "warn",
    SubscriptionStatus.INCOMPLETE: "warn",
    SubscriptionStatus.UNPAID: "bad",
    SubscriptionStatus.PAUSED: "bad",
    SubscriptionStatus.CANCELED: "off",
    SubscriptionStatus.INCOMPLETE_EXPIRED: "off",
}
_STATE_CLASS = {"active": "ok", "revoked": "bad", "expired": "warn", "inactive": "off", "no key": "off"}


def _status_badge(status: str, label: str) -> str:
    return format_html(
        '<span class="hc-badge hc-{}" data-status="{}">{}</span>', _BADGE_CLASS.get(status, "off"), status, label
    )


def _state_badge(state: str) -> str:
    return format_html('<span class="hc-badge hc-{}">{}</span>', _STATE_CLASS.get(state, "off"), state)


def stripe_dashboard_url(customer_id: str) -> str:
    """The customer's page in Stripe's dashboard (test-mode path unless STRIPE_LIVE_MODE)."""
    mode = "" if getattr(settings, "STRIPE_LIVE_MODE", False) else "test/"
    return f"https://dashboard.stripe.com/{mode}customers/{customer_id}"


def _djstripe_link(model: str, stripe_id: str, label: str) -> list[tuple[str, str, bool]]:
    """A link to dj-stripe's admin list filtered on the Stripe id (no query), when dj-stripe's admin is there."""
    try:
        url = reverse(f"admin:djstripe_{model}_changelist")
    except NoReverseMatch:
        return []
    return [(label, f"{url}?id={stripe_id}", False)]


__all__ = ["DeveloperAdmin", "OrganizationAdmin", "stripe_dashboard_url"]
