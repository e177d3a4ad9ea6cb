"""Organizations in the back office: the list (status, seats, Stripe, activity), the page (fields, developers in seat
order, invitations and alerts sent, 30-day usage chart) and the actions "set status" and "revoke every key"."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import display_for_value, unquote
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from accounts import monthly_use, selectors, services
from accounts.admin.base import MAX_ACTION_OBJECTS, ServiceAdmin, YesNoFilter, record_fieldsets
from accounts.admin.chart import usage_chart
from accounts.admin.display import djstripe_list_url, status_badge, stripe_dashboard_url
from accounts.admin.forms import StatusForm
from accounts.admin.invitations import memberships_section
from accounts.admin.organization_developers import DeveloperInline
from accounts.admin.pages import confirmation
from accounts.admin.registry import registered_admin
from accounts.admin.usage_billing import usage_billing_section
from accounts.models import Developer, Organization
from accounts.services import plans as plan_services
from accounts.wording import newest_refused, plural

USAGE_DAYS = 30
# dj-stripe's admin pages linked from an organization's page (only for staff allowed to open them).
DJSTRIPE_LINKED_MODELS = ("customer", "subscription")
_DESCRIPTIVE = ("name", "stripe_customer_id", "billing_email", "pricing_model")


class OverSeatLimitFilter(YesNoFilter):
    title = "over seat limit"
    parameter_name = "over_seat_limit"

    def condition(self) -> Q:
        # Worked out once (one pass over the seat holders), not again inside both the page query and its count.
        return Q(pk__in=list(Organization.objects.over_seat_limit().values_list("pk", flat=True)))


class MonthlyCapFilter(admin.SimpleListFilter):
    """Organizations that have used 80 % or all of their plan's monthly cap this month (issue 16)."""

    title = "monthly cap"
    parameter_name = "monthly_cap"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("80", f"{monthly_use.CAP_WARNING_PERCENT} % or more"), ("100", "reached")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("80", "100"):
            percent = monthly_use.CAP_WARNING_PERCENT if self.value() == "80" else 100
            return monthly_use.at_least_percent_of_cap(queryset, percent)
        return queryset


@admin.register(Organization)
class OrganizationAdmin(ServiceAdmin):
    list_display = (
        "name",
        "status_badge",
        "seats",
        "plan",
        "monthly_use",
        "pricing_model",
        "stripe_link",
        "developers",
        "last_activity",
        "created_at",
    )
    list_filter = ("subscription_status", "pricing_model", OverSeatLimitFilter, MonthlyCapFilter)
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
                    "plan",
                    "monthly_use",
                    "stripe_customer_id",
                    "subscription_id",
                    "stripe_links",
                )
            },
        ),
        ("Record", {"fields": ("last_activity", "created_at", "updated_at", "legacy_customer_id")}),
    )
    add_fieldsets = (
        (None, {"fields": ("name", "billing_email", "pricing_model")}),
        ("Subscription and seats", {"fields": ("subscription_status", "max_seats", "stripe_customer_id")}),
    )
    readonly_fields = (
        "seats",
        "monthly_use",
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
        return monthly_use.with_monthly_use(selectors.organizations_for_admin().select_related("plan"))

    def get_fieldsets(self, request: HttpRequest, obj: Organization | None = None) -> Any:
        return self.add_fieldsets if obj is None else record_fieldsets(super().get_fieldsets(request, obj), obj)

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
        return status_badge(obj.subscription_status, obj.get_subscription_status_display())

    @admin.display(description="seats used / max", ordering="seats_used")
    def seats(self, obj: Organization) -> str:
        used = getattr(obj, "seats_used", None)
        if used is None:
            return "—"
        if obj.over_seat_limit:
            return format_html(
                '{} / {} <span class="hc-flag" title="{}.">over limit</span>',
                used,
                obj.max_seats,
                capfirst(newest_refused(used, obj.max_seats)),
            )
        return f"{used} / {obj.max_seats}"

    @admin.display(description="calls this month / cap", ordering="calls_this_month")
    def monthly_use(self, obj: Organization) -> str:
        calls, cap = getattr(obj, "calls_this_month", None), getattr(obj, "monthly_cap", None)
        if calls is None:
            return "—"
        if cap is None:
            return f"{calls} (no cap)"
        state = monthly_use.cap_state(calls, cap)
        if not state:
            return f"{calls} / {cap}"
        label = "cap reached" if state == "reached" else f"{monthly_use.CAP_WARNING_PERCENT} %+ of cap"
        return format_html(
            '{} / {} <span class="hc-flag hc-cap-{}" data-cap="{}">{}</span>', calls, cap, state, state, label
        )

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
        return format_html('<a href="{}">{}</a>', _developers_url(obj), getattr(obj, "developer_count", 0))

    @admin.display(description="last activity", ordering="last_activity")
    def last_activity(self, obj: Organization) -> str:
        # Formatted here: a read-only field on the change page would print a bare datetime, or "None".
        return display_for_value(getattr(obj, "last_activity", None), "never")

    @admin.display(description="Stripe")
    def stripe_links(self, obj: Organization) -> str:
        # Which dj-stripe pages the viewer may open is set per request by render_change_form; none by default.
        viewable = getattr(obj, "_hc_djstripe_viewable", ())
        links = []  # (label, url, opens Stripe's site)
        if obj.stripe_customer_id:
            links.append(("Stripe dashboard", stripe_dashboard_url(obj.stripe_customer_id), True))
        for model, stripe_id in (("customer", obj.stripe_customer_id), ("subscription", obj.subscription_id)):
            url = djstripe_list_url(model, stripe_id) if stripe_id and model in viewable else None
            if url:
                links.append((f"dj-stripe {model}", url, False))
        if not links:
            return "—"
        return format_html_join(
            " · ",
            "{}",
            (
                (
                    format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, label)
                    if external
                    else format_html('<a href="{}">{}</a>', url, label),
                )
                for label, url, external in links
            ),
        )

    # --- saving: every write through the services ---

    def save_model(self, request: HttpRequest, obj: Organization, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = self.through_service(
                services.create_organization,
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
        descriptive = {name: data[name] for name in _DESCRIPTIVE if name in form.changed_data}
        if descriptive:
            self.through_service(services.update_organization, organization=current, actor=request.user, **descriptive)
        if "subscription_status" in form.changed_data:
            self.through_service(
                services.set_status, organization=current, status=data["subscription_status"], actor=request.user
            )
        if "max_seats" in form.changed_data:
            self.through_service(
                services.set_seats, organization=current, max_seats=data["max_seats"], actor=request.user
            )
        if "plan" in form.changed_data:
            self.through_service(plan_services.set_plan, organization=current, plan=data["plan"], actor=request.user)

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if request.method == "POST" and object_id and request.POST.get("_confirm_seats") != "yes":
            confirmation_page = self._seats_confirmation(request, object_id)
            if confirmation_page is not None:
                return confirmation_page
        return super().changeform_view(request, object_id, form_url, extra_context)

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
        if new_seats == 0:
            keep = "no one keeps access:"
        elif new_seats == 1:
            keep = "the earliest seat holder keeps access and"
        else:
            keep = f"the earliest {new_seats} seat holders keep access and"
        refused = obj.seats_used - new_seats
        return confirmation(
            self,
            request,
            title="Lower seats below those in use?",
            question=(
                f"{obj.name} uses {plural(obj.seats_used, 'seat')}. With {plural(new_seats, 'seat')}, {keep} "
                f"{'this developer is' if refused == 1 else f'these {refused} developers are'} refused until seats "
                "are added or freed. The organization is flagged as over its seat limit."
            ),
            objects=losing,
            submit=f"Yes, set {plural(new_seats, 'seat')}",
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
            # Only superusers open dj-stripe's pages (`hotcross.admin_site`): do not offer others dead links.
            viewable = {m for m in DJSTRIPE_LINKED_MODELS if _may_view(self.admin_site, request, m)}
            # ...and only to a synced object: a link to an empty list helps nobody (issue 31).
            ids = {"customer": obj.stripe_customer_id, "subscription": obj.subscription_id}
            obj._hc_djstripe_viewable = {
                m for m in viewable if ids.get(m) and apps.get_model("djstripe", m).objects.filter(id=ids[m]).exists()
            }
            first_day, rows = selectors.usage_per_developer_per_day(obj, days=USAGE_DAYS)
            context["usage_chart"] = usage_chart(first_day, rows, days=USAGE_DAYS)
            context["usage_days"] = USAGE_DAYS
            context["developers_url"] = _developers_url(obj)
            # Usage billing (accounts.admin.usage_billing): metered usage, reported up to, the upcoming invoice.
            context["usage_billing"] = usage_billing_section(obj, self.admin_site, request)
            # Its invitations and the alerts mailed to its owners (accounts.admin.invitations).
            context["memberships"] = memberships_section(obj, self.admin_site, request)
            context["add_developer_url"] = (
                reverse("admin:accounts_developer_add") + f"?organization={obj.pk}"
                if self.admin_site.is_registered(Developer) and request.user.has_perm("accounts.add_developer")
                else None
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- actions ---

    @admin.action(description="Set subscription status…", permissions=["change"])
    def set_status(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def perform(organizations: list[Organization], data: dict[str, Any]) -> None:
            status = data["status"]
            before = {org.pk: org.subscription_status for org in organizations}
            done = self.each(
                request,
                organizations,
                lambda org: services.set_status(organization=org, status=status, actor=request.user),
            )
            changed = sum(before[org.pk] != status for org, _ in done)
            self.report(request, f"Status set to {status} on", changed, "organization")

        return self.confirmed_action(
            request,
            queryset,
            perform=perform,
            title="Set the subscription status",
            question="Stripe normally sets the status; a manual change holds until Stripe's next event for the "
            "subscription. Keys work only while the status is "
            f"{' or '.join(settings.HOTCROSS_ALLOWED_STATUSES)}.",
            submit="Set status",
            action="set_status",
            form_class=StatusForm,
        )

    @admin.action(description="Revoke every key of the selected organizations…", permissions=["revoke_key"])
    def revoke_all_keys(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def perform(organizations: list[Organization], data: dict[str, Any]) -> None:
            revoked = services.revoke_all_keys(organizations=organizations, actor=request.user)
            self.report(request, "Revoked", revoked, "key")

        return self.confirmed_action(
            request,
            queryset,
            perform=perform,
            title="Revoke every key?",
            question="Every developer key of these organizations stops working at once, on every transport. "
            "Developers need a new key (rotate) to work again. This cannot be undone.",
            details=lambda org: f"{org.name}: {plural(org.seats_used, 'seat')} in use",
            submit="Yes, revoke every key",
            action="revoke_all_keys",
            danger=True,
        )


def _may_view(site: admin.AdminSite, request: HttpRequest, djstripe_model: str) -> bool:
    """Whether dj-stripe's admin for this model is there and lets the user in (its own permission rule)."""
    try:
        model = apps.get_model("djstripe", djstripe_model)
    except LookupError:
        return False
    model_admin = registered_admin(site, model)
    return model_admin is not None and model_admin.has_view_permission(request)


def _developers_url(organization: Organization) -> str:
    return reverse("admin:accounts_developer_changelist") + f"?organization__id__exact={organization.pk}"
