"""POST /api/v1/usage obeys the organization's plan (security review, issue 26 item 5): a tool outside the plan is
refused, reported events spend the plan's rate-limit buckets (the same as /mcp calls, all or none per batch) and a
batch never holds more than the plan's calls per minute, a plan that refuses at its monthly cap refuses a batch that
would pass it; nothing is recorded for a refused batch, and a colleague keeps working."""

from __future__ import annotations

import datetime
import json

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts import monthly_use, plans, rate_buckets
from accounts.choices import AtCap
from accounts.models import UsageEvent
from api.models import ReportedEvent
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/usage"


@pytest.fixture(autouse=True)
def _fresh_plans_and_limits():
    plans.forget_table()
    rate_buckets.reset()
    yield
    plans.forget_table()
    rate_buckets.reset()


def event(n: int | str, tool: str = "search_code", **overrides) -> dict:
    return {
        "id": f"evt-{n}",
        "tool": tool,
        "at": (timezone.now() - datetime.timedelta(minutes=1)).isoformat(),
        "ok": True,
        "duration_ms": 12,
        **overrides,
    }


def report(developer, events):
    return Client().post(
        URL,
        data=json.dumps({"events": events}),
        content_type="application/json",
        headers={"X-API-Key": developer.plain_key},
    )


def developer_on(max_seats: int = 1, **plan_fields):
    organization = OrganizationFactory(plan=PlanFactory(code="team", name="Team", **plan_fields), max_seats=max_seats)
    return DeveloperFactory(organization=organization)


def nothing_recorded() -> bool:
    return not UsageEvent.objects.exists() and not ReportedEvent.objects.exists()


def test_the_reviewed_attack_is_refused_and_the_colleague_keeps_working():
    """1 000 events of a tool that is not in the plan used up the organization's cap; now they are refused."""
    developer = developer_on(
        max_seats=2, allows_all_tools=False, allowed_tools="search_code\ndocs_*", monthly_calls_per_seat=500
    )
    colleague = DeveloperFactory(organization=developer.organization)
    response = report(developer, [event(n, "not_a_real_tool") for n in range(1000)])
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "tool_not_in_plan"
    assert error["plan"] == "team"
    assert "1000 of the 1000 events" in error["message"] and "'not_a_real_tool'" in error["message"]
    assert [problem["index"] for problem in error["events"]] == list(range(20))
    assert nothing_recorded()
    assert monthly_use.calls_this_month(developer.organization_id) == 0
    assert report(colleague, [event(1, "docs_search")]).json() == {"recorded": 1, "duplicates": []}


def test_one_tool_outside_the_plan_refuses_the_batch_and_the_plans_tools_are_recorded():
    developer = developer_on(allows_all_tools=False, allowed_tools="search_code\ndocs_*")
    refused = report(developer, [event(0), event(1, "docs_read"), event(2, "delete_repo")])
    assert refused.status_code == 403
    assert refused.json()["error"]["events"] == [{"index": 2, "message": "The tool 'delete_repo' is not in the plan."}]
    assert nothing_recorded()
    ok = report(developer, [event(0), event(1, "docs_read")])
    assert ok.json() == {"recorded": 2, "duplicates": []}
    assert set(UsageEvent.objects.values_list("tool_name", flat=True)) == {"search_code", "docs_read"}


def test_a_plan_with_every_tool_and_no_plan_take_any_tool_name():
    assert report(developer_on(), [event(1, "anything")]).json()["recorded"] == 1
    assert report(DeveloperFactory(), [event(1, "anything")]).json()["recorded"] == 1


def test_a_batch_that_would_pass_a_refusing_cap_is_refused_and_what_fits_is_recorded():
    developer = developer_on(max_seats=2, monthly_calls_per_seat=5, at_cap=AtCap.REFUSE)  # cap: 10 calls a month
    assert report(developer, [event(n) for n in range(8)]).json()["recorded"] == 8
    refused = report(developer, [event(n) for n in range(8, 13)])
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["code"], error["monthly_cap"], error["remaining"]) == ("monthly_cap_reached", 10, 2)
    assert "8 are used" in error["message"] and "2 would fit" in error["message"]
    assert UsageEvent.objects.count() == 8 and ReportedEvent.objects.count() == 8
    assert report(developer, [event(n) for n in range(8, 10)]).json()["recorded"] == 2
    # At the cap, a retry of events already counted is still answered (duplicates take no room).
    assert report(developer, [event(0), event(9)]).json() == {"recorded": 0, "duplicates": ["evt-0", "evt-9"]}
    assert report(developer, [event(10)]).json()["error"]["remaining"] == 0
    assert monthly_use.calls_this_month(developer.organization_id) == 10


def test_calls_of_the_previous_month_count_against_that_months_cap(settings):
    settings.HOTCROSS_API_USAGE_WINDOW_HOURS = 24 * 40  # only for this test: events of last month are in the window
    developer = developer_on(monthly_calls_per_seat=3)
    last_month = plans.month_start(timezone.now()) - datetime.timedelta(hours=1)
    old = [event(f"old-{n}", at=last_month.isoformat()) for n in range(3)]
    assert report(developer, old).json()["recorded"] == 3
    assert report(developer, [event("old-3", at=last_month.isoformat())]).json()["error"]["code"] == (
        "monthly_cap_reached"
    )
    assert report(developer, [event(n) for n in range(3)]).json()["recorded"] == 3  # this month is its own


def test_a_plan_that_goes_on_at_the_cap_records_the_overage():
    developer = developer_on(monthly_calls_per_seat=2, at_cap=AtCap.OVERAGE)
    assert report(developer, [event(n) for n in range(5)]).json()["recorded"] == 5
    assert monthly_use.calls_this_month(developer.organization_id) == 5


def test_reported_events_spend_the_plans_rate_limit_all_or_none():
    developer = developer_on(rate_limit_per_developer=5)
    too_big = report(developer, [event(n) for n in range(6)])
    assert too_big.status_code == 400
    error = too_big.json()["error"]
    assert (error["code"], error["max_events"]) == ("too_many_events", 5)
    assert "at most 5 events on the plan Team (team)" in error["message"]
    assert report(developer, [event(n) for n in range(3)]).json()["recorded"] == 3
    refused = report(developer, [event(n) for n in range(3, 6)])  # 2 tokens left: not 3, and not 2 of the 3 either
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["scope"]) == ("rate_limited", "developer")
    assert int(refused["Retry-After"]) == error["retry_after"] >= 1
    assert UsageEvent.objects.count() == 3
    assert report(developer, [event(3), event(4)]).json()["recorded"] == 2  # what is left is still there
    # A retry of a recorded batch costs nothing: it records nothing new.
    assert report(developer, [event(0), event(1)]).json() == {"recorded": 0, "duplicates": ["evt-0", "evt-1"]}
    # The same buckets as calls on /mcp: the developer has none left for a call either.
    plan = plans.terms_for(developer.organization.plan_id)
    assert not rate_buckets.check(developer.id, developer.organization_id, plan.rate_limit_per_developer, None).allowed


def test_the_organizations_rate_limit_holds_across_its_developers():
    developer = developer_on(max_seats=2, rate_limit_per_organization=4)
    colleague = DeveloperFactory(organization=developer.organization)
    assert report(developer, [event(n) for n in range(3)]).json()["recorded"] == 3
    refused = report(colleague, [event(n) for n in range(2)])
    assert refused.status_code == 429 and refused.json()["error"]["scope"] == "organization"
    assert report(colleague, [event(0)]).json()["recorded"] == 1


def test_with_redis_a_batch_takes_its_tokens_at_once_or_none(redis_service):
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_service.url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0},
        }
    }
    developer = developer_on(rate_limit_per_developer=10)
    with override_settings(CACHES=caches):
        rate_buckets.reset()
        assert report(developer, [event(n) for n in range(7)]).json()["recorded"] == 7
        refused = report(developer, [event(n) for n in range(7, 11)])
        assert refused.status_code == 429
        assert 1 <= refused.json()["error"]["retry_after"] <= 7  # 4 tokens wanted, about 3 there, 1 every 6 s
        assert report(developer, [event(n) for n in range(7, 10)]).json()["recorded"] == 3
        stored = redis_service.client().hget(f"{rate_buckets.KEY_PREFIX}d:{developer.id}", "tokens")
        assert float(stored) < 1
    assert UsageEvent.objects.count() == 10
