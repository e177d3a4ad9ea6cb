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
        for field, clean in (
            ("allowed_prompts", plan_services.clean_prompt_patterns),
            ("allowed_resources", plan_services.clean_resource_patterns),
        ):
            try:
                data[field] = clean(data.get(field, ""))
            except InvalidInput as exc:
                self.add_error(field, exc.message)
        return data


@admin.register(Plan)
class PlanAdmin(ServiceAdmin):
    form = PlanForm
    list_display = (
        "name",
        "code",
        "tools",
        "prompts",
        "resources",
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
            "Prompts and resources",
            {
                "fields": ("allows_all_prompts", "allowed_prompts", "allows_all_resources", "allowed_resources"),
                "description": "What the plan's developers see and may get of the gateway's upstream (and of any "
                "built-in prompt or resource). Completions follow the prompt or resource template they complete. "
                "Unticked with nothing listed: none.",
            },
        ),
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
        return _listed(obj.allows_all_tools, obj.allowed_tools)

    @admin.display(description="prompts")
    def prompts(self, obj: Plan) -> str:
        return _listed(obj.allows_all_prompts, obj.allowed_prompts)

    @admin.display(description="resources")
    def resources(self, obj: Plan) -> str:
        return _listed(obj.allows_all_resources, obj.allowed_resources)

    @admin.display(description="organizations", ordering="organization_count")
    def organizations(self, obj: Plan) -> int:
        return getattr(obj, "organization_count", 0)

    @admin.display(description="default", boolean=True)
    def is_default(self, obj: Plan) -> bool:
        return obj.code == default_plan_code()

    def save_model(self, request: HttpRequest, obj: Plan, form: Any, change: bool) -> None:
        self.through_service(plan_services.save_plan, plan=obj, actor=request.user)


def _listed(every: bool, text: str) -> str:
    """A plan's allow-list in the list of plans: all, none, or its first lines."""
    if every:
        return "all"
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "none"
    return ", ".join(lines[:5]) + (f" (+{len(lines) - 5})" if len(lines) > 5 else "")
