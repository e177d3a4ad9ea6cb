"""Plans in the back office (issue 16): the list, the page (tool patterns checked by `accounts.services.plans`), the
history. Writes go through `accounts.services.plans.save_plan`; there is no delete (organizations point at plans)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from accounts.admin.base import ServiceAdmin
from accounts.exceptions import InvalidInput
from accounts.models import Plan
from accounts.plans import default_plan_code
from accounts.services import plans as plan_services


class PlanForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = plan_services.PLAN_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        try:
            data["allowed_tools"] = plan_services.clean_tool_patterns(
                data.get("allowed_tools", ""), allows_all_tools=bool(data.get("allows_all_tools"))
            )
        except InvalidInput as exc:
            self.add_error("allowed_tools", exc.message)
        return data


@admin.register(Plan)
class PlanAdmin(ServiceAdmin):
    form = PlanForm
    list_display = (
        "name",
        "code",
        "tools",
        "rate_limit_per_developer",
        "rate_limit_per_organization",
        "monthly_calls_per_seat",
        "at_cap",
        "metered_billing",
        "organizations",
        "is_default",
    )
    search_fields = ("name", "code")
    fieldsets = (
        (None, {"fields": ("code", "name")}),
        ("Tools", {"fields": ("allows_all_tools", "allowed_tools")}),
        (
            "Limits",
            {"fields": ("rate_limit_per_developer", "rate_limit_per_organization", "monthly_calls_per_seat", "at_cap")},
        ),
        ("Usage billing", {"fields": ("metered_billing", "stripe_meter_event_name")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(organization_count=Count("organizations"))

    @admin.display(description="tools")
    def tools(self, obj: Plan) -> str:
        if obj.allows_all_tools:
            return "all"
        lines = [line for line in obj.allowed_tools.splitlines() if line.strip()]
        return ", ".join(lines[:5]) + (f" (+{len(lines) - 5})" if len(lines) > 5 else "")

    @admin.display(description="organizations", ordering="organization_count")
    def organizations(self, obj: Plan) -> int:
        return getattr(obj, "organization_count", 0)

    @admin.display(description="default", boolean=True)
    def is_default(self, obj: Plan) -> bool:
        return obj.code == default_plan_code()

    def save_model(self, request: HttpRequest, obj: Plan, form: Any, change: bool) -> None:
        self.through_service(plan_services.save_plan, plan=obj, actor=request.user)
