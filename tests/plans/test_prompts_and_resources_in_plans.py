"""What a plan allows of prompts and resources (issue 28, item 6): the fields, their checked lines, the admin, the
plan table, and migration 0012 (plans with a tool allow-list get no prompt and no resource). The gateway's side is
tests/gateway/test_plan_covers_every_method.py."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from accounts import plans
from accounts.exceptions import InvalidInput
from accounts.models import Plan
from accounts.services import plans as plan_services
from tests.factories import PlanFactory
from tests.support.migrations import migrate

BEFORE = ("accounts", "0011_meter_reports")


@pytest.fixture(autouse=True)
def _fresh_plan_table():
    plans.forget_table()
    yield
    plans.forget_table()


@pytest.mark.django_db
def test_the_plan_table_holds_the_prompt_and_resource_lines():
    narrow = PlanFactory(
        code="narrow",
        allows_all_prompts=False,
        allowed_prompts="brief\nreview_*",
        allows_all_resources=False,
        allowed_resources="",
    )
    terms = plans.terms_for(narrow.id)
    assert (terms.prompts, terms.resources) == (("brief", "review_*"), ())
    assert terms.allows_prompt("review_code") and not terms.allows_prompt("greet")
    assert not terms.allows_resource("notes://all")  # none listed: no resource
    open_terms = plans.terms_for(PlanFactory(code="open").id)
    assert open_terms.prompts is None and open_terms.resources is None  # a new plan: every prompt and resource
    assert open_terms.allows_prompt("anything") and open_terms.allows_resource("file:///etc/passwd")
    assert plans.NO_PLAN.allows_prompt("anything") and plans.NO_PLAN.allows_resource("notes://all")


@pytest.mark.django_db
def test_resource_lines_match_uris_and_uri_templates():
    plan = PlanFactory(code="notes", allows_all_resources=False, allowed_resources="notes://*\ndocs://readme")
    terms = plans.terms_for(plan.id)
    assert terms.allows_resource("notes://today") and terms.allows_resource("notes://{day}")
    assert terms.allows_resource("docs://readme") and not terms.allows_resource("docs://secret")
    assert not terms.allows_resource("file:///etc/passwd")


@pytest.mark.django_db
def test_the_service_checks_the_lines():
    plan = Plan(code="lines", name="Lines", allows_all_prompts=False, allows_all_resources=False)
    plan.allowed_prompts = " brief \nbrief\n\nreview_*"
    plan.allowed_resources = "notes://*\n notes://{day} "
    plan_services.save_plan(plan=plan)
    plan.refresh_from_db()
    assert (plan.allowed_prompts, plan.allowed_resources) == ("brief\nreview_*", "notes://*\nnotes://{day}")
    plan.allowed_resources = "notes://my notes"
    with pytest.raises(InvalidInput, match="Not a resource URI or pattern"):
        plan_services.save_plan(plan=plan)
    plan.allowed_resources, plan.allowed_prompts = "", "a prompt"
    with pytest.raises(InvalidInput, match="Not a prompt name or pattern"):
        plan_services.save_plan(plan=plan)
    plan.allowed_prompts = ""
    plan_services.save_plan(plan=plan)  # nothing listed, unticked: the plan has no prompt and no resource
    assert plans.terms_for(plan.id).prompts == ()


@pytest.mark.django_db
def test_staff_set_a_plans_prompts_and_resources_in_the_admin(admin_client):
    plan = PlanFactory(code="team", name="Team")
    url = reverse("admin:accounts_plan_change", args=[plan.pk])
    page = admin_client.get(url).content.decode()
    assert "every prompt" in page.lower() and "every resource" in page.lower()
    form = {
        "code": "team",
        "name": "Team",
        "allows_all_tools": "on",
        "allowed_tools": "",
        "allowed_prompts": "brief",
        "allowed_resources": "notes://my notes",
        "at_cap": "refuse",
        "metered_billing": "none",
        "stripe_meter_event_name": "",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "Not a resource URI or pattern" in response.content.decode()
    response = admin_client.post(url, {**form, "allowed_resources": "notes://*"})
    assert response.status_code == 302
    plan.refresh_from_db()
    assert (plan.allows_all_prompts, plan.allowed_prompts) == (False, "brief")
    assert (plan.allows_all_resources, plan.allowed_resources) == (False, "notes://*")
    history = LogEntry.objects.get(object_id=str(plan.pk)).change_message
    assert "allowed prompts" in history and "allowed resources" in history
    listing = admin_client.get(reverse("admin:accounts_plan_changelist")).content.decode()
    assert "brief" in listing and "notes://*" in listing


@pytest.mark.django_db(transaction=True)
def test_migration_0012_gives_plans_with_a_tool_allow_list_no_prompt_and_no_resource():
    try:
        state = migrate(BEFORE)
        OldPlan = state.apps.get_model("accounts", "Plan")
        OldPlan.objects.create(code="open", name="Open", allows_all_tools=True)
        OldPlan.objects.create(code="whoami-only", name="Whoami only", allows_all_tools=False, allowed_tools="whoami")
        migrate()
        rows = {
            plan.code: (plan.allows_all_prompts, plan.allowed_prompts, plan.allows_all_resources)
            for plan in Plan.objects.all()
        }
        assert rows == {"open": (True, "", True), "whoami-only": (False, "", False)}
        assert plans.terms_for(Plan.objects.get(code="whoami-only").id).prompts == ()
    finally:
        migrate()
