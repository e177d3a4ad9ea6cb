"""Monthly caps (issue 16, step 5): calls per seat × seats per calendar month (UTC), from the usage rollups; flagged at
80 % and 100 % in the admin (list filter, badge) and on the dashboard; at 100 % the plan refuses with
`monthly_cap_reached` or lets calls through as overage."""

from __future__ import annotations

import datetime

import anyio
import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from accounts import monthly_use, plans
from accounts.models import UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory, UsageEventFactory
from tests.support.mcp import http_client, mcp_error, usage_written
from tests.support.metrics import metering_flushed


def used(org, n: int, *, when: datetime.datetime | None = None) -> None:
    developer = org.developers.first() or DeveloperFactory(organization=org)
    for _ in range(n):
        UsageEventFactory(developer=developer, created_at=when or timezone.now())


@pytest.mark.django_db
def test_calls_this_month_count_from_the_first_of_the_month_utc():
    org = OrganizationFactory()
    now = timezone.now()
    used(org, 3)
    used(org, 2, when=plans.month_start(now) - datetime.timedelta(seconds=1))  # last month
    assert monthly_use.calls_this_month(org.pk) == 3


@pytest.mark.django_db
def test_the_admin_flags_organizations_at_80_and_100_percent(admin_client):
    plan = PlanFactory(code="capped", name="Capped", monthly_calls_per_seat=5)
    under = OrganizationFactory(name="Under", plan=plan, max_seats=2)  # cap 10
    near = OrganizationFactory(name="Near", plan=plan, max_seats=2)
    full = OrganizationFactory(name="Full", plan=plan, max_seats=1)  # cap 5
    uncapped = OrganizationFactory(name="Uncapped")
    used(under, 7)
    used(near, 8)
    used(full, 5)
    used(uncapped, 50)
    url = reverse("admin:accounts_organization_changelist")

    def names(query: str) -> set[str]:
        response = admin_client.get(f"{url}?{query}")
        assert response.status_code == 200
        return {org.name for org in response.context["cl"].result_list}

    assert names("monthly_cap=80") == {"Near", "Full"}
    assert names("monthly_cap=100") == {"Full"}
    page = admin_client.get(url).content.decode()
    assert 'data-cap="warning"' in page and 'data-cap="reached"' in page
    assert "7 / 10" in page and "50 (no cap)" in page
    change = admin_client.get(reverse("admin:accounts_organization_change", args=[full.pk])).content.decode()
    assert "cap reached" in change
    dashboard = admin_client.get(reverse("admin:index"))
    lines = {line.label: line.count for line in dashboard.context["board"].monthly_cap}
    assert lines == {"At 80 % or more of their monthly cap": 2, "Monthly cap reached": 1}


@pytest.mark.django_db
def test_the_default_plans_cap_applies_to_organizations_without_a_plan(admin_client):
    PlanFactory(code="free", name="Free", monthly_calls_per_seat=2)
    org = OrganizationFactory(name="Defaulted", max_seats=1)
    used(org, 2)
    with override_settings(HOTCROSS_DEFAULT_PLAN="free"):
        response = admin_client.get(reverse("admin:accounts_organization_changelist") + "?monthly_cap=100")
    assert {o.name for o in response.context["cl"].result_list} == {"Defaulted"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("at_cap", ["refuse", "overage"])
def test_at_the_cap_the_plans_rule_applies_on_mcp(mcp_http, at_cap):
    plan = PlanFactory(code=f"cap-{at_cap}", name="Capped", monthly_calls_per_seat=2, at_cap=at_cap)
    org = OrganizationFactory(plan=plan, max_seats=1)
    developer = DeveloperFactory(organization=org)
    used(org, 1)

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            first = await client.call_tool("ping", {})  # the 2nd call of the month: within the cap
            try:
                second = await client.call_tool("ping", {})
            except Exception as exc:
                return first, mcp_error(exc)
            return first, second

    first, second = anyio.run(scenario)
    assert not first.is_error
    if at_cap == "refuse":
        assert second.code == -32003 and second.data["code"] == "monthly_cap_reached"
        assert second.data["monthly_cap"] == 2 and "2 calls for this month" in second.message
        usage_written(2)
        # All the shared server metered is written (no stop writes it), the two calls of another developer aside.
        barrier = DeveloperFactory()
        metering_flushed(mcp_http, barrier)
        assert UsageEvent.objects.exclude(developer=barrier).count() == 2  # the refused call is not usage
    else:
        assert not second.is_error
        usage_written(3)
