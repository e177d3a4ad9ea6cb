"""The plan in effect (issue 16, step 1): the per-process plan table, services, admin, check, whoami and verify."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.core import checks
from django.test import override_settings
from django.urls import reverse

from accounts import plans
from accounts.authentication import authenticate_key
from accounts.exceptions import InvalidInput
from accounts.models import Plan
from accounts.services import plans as plan_services
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_plan_table():
    plans.forget_table()
    yield
    plans.forget_table()


def test_the_key_check_gives_the_organizations_plan_and_the_table_its_terms():
    plan = PlanFactory(code="team", name="Team", allows_all_tools=False, allowed_tools="whoami\ndocs_*")
    developer = DeveloperFactory(organization=OrganizationFactory(plan=plan))
    principal = authenticate_key(developer.plain_key)
    assert principal.plan_id == plan.id
    terms = plans.terms_for(principal.plan_id)
    assert (terms.code, terms.name, terms.tools) == ("team", "Team", ("whoami", "docs_*"))
    assert terms.allows("docs_search") and terms.allows("whoami") and not terms.allows("todos_add")


def test_without_a_plan_the_default_plan_applies_else_no_plan():
    PlanFactory(code="free", name="Free", rate_limit_per_developer=10)
    with override_settings(HOTCROSS_DEFAULT_PLAN="free"):
        plans.forget_table()
        assert plans.terms_for(None).code == "free"
    with override_settings(HOTCROSS_DEFAULT_PLAN=""):
        plans.forget_table()
        assert plans.terms_for(None) is plans.NO_PLAN


def test_a_plan_edit_reaches_the_table_through_the_service():
    plan = PlanFactory(code="team", rate_limit_per_developer=10)
    assert plans.terms_for(plan.id).rate_limit_per_developer == 10
    plan.rate_limit_per_developer = 20
    plan_services.save_plan(plan=plan)
    assert plans.terms_for(plan.id).rate_limit_per_developer == 20


def test_the_table_is_read_at_most_once_per_ttl(django_assert_num_queries):
    plan = PlanFactory()
    plans.terms_for(plan.id)
    with django_assert_num_queries(0):
        for _ in range(100):
            plans.terms_for(plan.id)


def test_tool_patterns_are_checked():
    assert plan_services.clean_tool_patterns(" whoami \n\ndocs_*\nwhoami", allows_all_tools=False) == "whoami\ndocs_*"
    for bad in ("rm -rf /", "docs_[", "x" * 200, "tool;drop"):
        with pytest.raises(InvalidInput):
            plan_services.clean_tool_patterns(bad, allows_all_tools=False)
    with pytest.raises(InvalidInput, match="every tool"):
        plan_services.clean_tool_patterns("", allows_all_tools=False)
    assert plan_services.clean_tool_patterns("", allows_all_tools=True) == ""


def test_set_plan_writes_the_history_and_is_idempotent():
    plan = PlanFactory(code="team")
    org = OrganizationFactory()
    plan_services.set_plan(organization=org, plan=plan)
    plan_services.set_plan(organization=org, plan=plan)
    org.refresh_from_db()
    assert org.plan == plan
    messages = list(LogEntry.objects.filter(object_id=str(org.pk)).values_list("change_message", flat=True))
    assert messages == ["Plan: default → team."]


def test_staff_edit_a_plan_with_checked_tool_patterns_and_history(admin_client):
    plan = PlanFactory(code="team", name="Team")
    url = reverse("admin:accounts_plan_change", args=[plan.pk])
    form = {
        "code": "team",
        "name": "Team",
        "allowed_tools": "docs_[",
        "at_cap": "refuse",
        "metered_billing": "none",
        "stripe_meter_event_name": "",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "Not a tool name or pattern" in response.content.decode()
    plan.refresh_from_db()
    assert plan.allowed_tools == ""
    response = admin_client.post(url, {**form, "allowed_tools": "whoami\ndocs_*", "rate_limit_per_developer": "30"})
    assert response.status_code == 302
    plan.refresh_from_db()
    assert (plan.allowed_tools, plan.rate_limit_per_developer) == ("whoami\ndocs_*", 30)
    assert LogEntry.objects.filter(object_id=str(plan.pk)).exists()
    assert admin_client.get(reverse("admin:accounts_plan_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:accounts_plan_history", args=[plan.pk])).status_code == 200


def test_staff_pick_an_organizations_plan_on_its_page(admin_client):
    plan = PlanFactory(code="team", name="Team")
    org = OrganizationFactory()
    url = reverse("admin:accounts_organization_change", args=[org.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    data.update(
        {"plan": str(plan.pk), "developers-TOTAL_FORMS": "0", "developers-INITIAL_FORMS": "0"},
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    org.refresh_from_db()
    assert org.plan == plan


def test_check_warns_when_the_default_plan_names_no_plan():
    with override_settings(HOTCROSS_DEFAULT_PLAN="nope"):
        found = checks.run_checks(databases=["default"])
        assert any(message.id == "accounts.W102" for message in found)
    Plan.objects.create(code="nope", name="Nope")
    with override_settings(HOTCROSS_DEFAULT_PLAN="nope"):
        assert not any(message.id == "accounts.W102" for message in checks.run_checks(databases=["default"]))


def test_verify_states_the_plan_and_its_limits(client):
    plan = PlanFactory(
        code="team",
        name="Team",
        allows_all_tools=False,
        allowed_tools="whoami",
        allows_all_prompts=False,
        allowed_prompts="brief",
        rate_limit_per_developer=60,
        monthly_calls_per_seat=1000,
    )
    developer = DeveloperFactory(organization=OrganizationFactory(plan=plan, max_seats=3))
    response = client.post(
        "/api/v1/keys/verify",
        data=b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {developer.plain_key}",
    )
    assert response.status_code == 200
    assert response.json()["entitlements"] == {
        "code": "team",
        "name": "Team",
        "tools": ["whoami"],
        "prompts": ["brief"],
        "resources": "all",
        "rate_limit_per_developer_per_minute": 60,
        "rate_limit_per_organization_per_minute": None,
        "monthly_calls_per_seat": 1000,
        "monthly_cap": 3000,
        "at_cap": "refuse",
    }


def test_a_plan_made_after_the_table_was_read_is_found_at_once():
    plans.terms_for(None)  # the table is read, and fresh for up to a second
    plan = Plan.objects.create(code="late", name="Late")  # not through the service: nothing forgets the table
    assert plans.terms_for(plan.id).code == "late"


def test_the_plan_form_reads_as_written_and_no_help_text_is_markup(admin_client):
    """Issue 31: a help text with `<code>` in it was a real, unclosed HTML element on the plan form (it read
    "hotcross_plan= names it" and turned the rest of the form monospace). Django does not escape help texts: none of
    ours may hold markup or backticks."""
    from django.apps import apps

    page = admin_client.get(reverse("admin:accounts_plan_add")).content.decode()
    assert "hotcross_plan=CODE puts its subscribers on this plan" in page
    assert "`" not in page.split('id="plan_form"')[-1].split("</form>")[0]
    found = [
        f"{model.__name__}.{field.name}"
        for label in ("accounts", "oauth", "api")
        for model in apps.get_app_config(label).get_models()
        for field in model._meta.get_fields()
        if any(mark in str(getattr(field, "help_text", "") or "") for mark in "`<>")
    ]
    assert found == []
