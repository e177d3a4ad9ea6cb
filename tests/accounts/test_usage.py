"""Usage events: the services that write them (`record_usage(s)`, `arecord_usages`) and `monthly_usage`."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest
from django.utils import timezone

from accounts.exceptions import InvalidInput, NotFound
from accounts.models import UsageEvent
from accounts.selectors import monthly_usage
from accounts.services import arecord_usages, record_usage, record_usages
from infra.db import aclose
from tests.factories import DeveloperFactory, UsageEventFactory

pytestmark = pytest.mark.django_db

UTC = datetime.UTC


def test_record_usage_writes_one_event():
    developer = DeveloperFactory()
    event = record_usage(
        developer_id=developer.id,
        organization_id=developer.organization_id,
        tool_name=" whoami ",
        ok=False,
        duration_ms=12,
    )
    stored = UsageEvent.objects.get()
    assert stored.pk == event.pk
    assert (stored.developer_id, stored.organization_id) == (developer.id, developer.organization_id)
    assert (stored.tool_name, stored.ok, stored.duration_ms) == ("whoami", False, 12)
    assert timezone.now() - stored.created_at < datetime.timedelta(seconds=5)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"tool_name": ""}, "tool name of 1 to 200 characters"),
        ({"tool_name": "   "}, "tool name of 1 to 200 characters"),
        ({"tool_name": "x" * 201}, "tool name of 1 to 200 characters"),
        ({"tool_name": None}, "tool name of 1 to 200 characters"),
        ({"duration_ms": -1}, "whole number of milliseconds"),
        ({"duration_ms": 1.5}, "whole number of milliseconds"),
        ({"duration_ms": True}, "whole number of milliseconds"),
        ({"created_at": datetime.datetime(2026, 1, 1)}, "needs a time zone"),
    ],
)
def test_record_usage_refuses_bad_input_and_writes_nothing(changes, says):
    developer = DeveloperFactory()
    arguments = {
        "developer_id": developer.id,
        "organization_id": developer.organization_id,
        "tool_name": "whoami",
        "ok": True,
        "duration_ms": 3,
        **changes,
    }
    with pytest.raises(InvalidInput, match=says):
        record_usage(**arguments)
    assert not UsageEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_record_usage_for_a_developer_that_does_not_exist_is_not_found_and_writes_nothing():
    developer = DeveloperFactory()
    with pytest.raises(NotFound, match="does not exist"):
        record_usage(
            developer_id=uuid.uuid4(), organization_id=developer.organization_id, tool_name="t", ok=True, duration_ms=0
        )
    assert not UsageEvent.objects.exists()


def test_a_huge_duration_is_capped_not_refused():
    developer = DeveloperFactory()
    record_usage(
        developer_id=developer.id, organization_id=developer.organization_id, tool_name="t", ok=True, duration_ms=10**12
    )
    assert UsageEvent.objects.get().duration_ms == 2**31 - 1


def test_monthly_usage_counts_the_calendar_month_of_now_only():
    developer = DeveloperFactory()
    colleague = DeveloperFactory(organization=developer.organization)
    stranger = DeveloperFactory()
    now = datetime.datetime(2026, 3, 15, 12, tzinfo=UTC)
    for who, tool, when in [
        (developer, "whoami", datetime.datetime(2026, 3, 1, 0, 0, tzinfo=UTC)),  # first instant: in
        (developer, "whoami", datetime.datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)),
        (developer, "search", datetime.datetime(2026, 3, 10, tzinfo=UTC)),
        (developer, "search", datetime.datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)),  # February: out
        (developer, "search", datetime.datetime(2026, 4, 1, tzinfo=UTC)),  # April: out
        (colleague, "whoami", datetime.datetime(2026, 3, 2, tzinfo=UTC)),
        (stranger, "whoami", datetime.datetime(2026, 3, 2, tzinfo=UTC)),
    ]:
        UsageEventFactory(developer=who, tool_name=tool, created_at=when)

    usage = monthly_usage(developer_id=developer.id, organization_id=developer.organization_id, now=now)
    assert usage.month == "2026-03"
    assert usage.since == datetime.datetime(2026, 3, 1, tzinfo=UTC)
    assert usage.until == datetime.datetime(2026, 4, 1, tzinfo=UTC)
    assert usage.by_tool == {"search": 1, "whoami": 2}
    assert usage.developer_total == 3
    assert usage.organization_total == 4

    december = monthly_usage(
        developer_id=developer.id,
        organization_id=developer.organization_id,
        now=datetime.datetime(2026, 12, 31, tzinfo=UTC),
    )
    assert december.until == datetime.datetime(2027, 1, 1, tzinfo=UTC)
    assert (december.by_tool, december.developer_total, december.organization_total) == ({}, 0, 0)


def _calls(developer, gone_id):
    when = datetime.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    good = {"developer_id": developer.id, "organization_id": developer.organization_id, "ok": True, "duration_ms": 1}
    return [
        {**good, "tool_name": "echo", "created_at": when},
        {**good, "tool_name": "  "},  # refused: no tool name
        {**good, "developer_id": gone_id, "tool_name": "echo"},  # a developer deleted meanwhile
        {**good, "tool_name": "whoami", "created_at": when},
    ]


@pytest.mark.django_db(transaction=True)
def test_record_usages_writes_the_good_ones_together_and_says_why_the_others_were_not():
    developer = DeveloperFactory()
    outcomes = record_usages(_calls(developer, uuid.uuid4()))

    assert [type(o).__name__ for o in outcomes] == ["NoneType", "InvalidInput", "NotFound", "NoneType"]
    stored = sorted(UsageEvent.objects.values_list("tool_name", "created_at"))
    assert stored == [("echo", datetime.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)), ("whoami", stored[1][1])]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_arecord_usages_on_postgresql_writes_from_the_event_loop_with_the_same_rules():
    developer = DeveloperFactory()

    async def record():
        try:
            return await arecord_usages(_calls(developer, uuid.uuid4()))
        finally:
            await aclose()

    outcomes = asyncio.run(record())

    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], InvalidInput) and isinstance(outcomes[2], NotFound)
    assert sorted(UsageEvent.objects.values_list("tool_name", flat=True)) == ["echo", "whoami"]
    assert UsageEvent.objects.get(tool_name="echo").created_at == datetime.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_arecord_usages_stores_every_value_exactly_whatever_the_tool_name():
    # The batch INSERT passes each column as one array: names that look like array syntax must stay data.
    developer = DeveloperFactory()
    names = ['say "hi"', "back\\slash", "a,b", "{braces}", "NULL", "with space", "Grüße 👋", "x" * 200]
    paris = datetime.timezone(datetime.timedelta(hours=1))
    calls = [
        {
            "developer_id": developer.id,
            "organization_id": developer.organization_id,
            "tool_name": name,
            "ok": index % 2 == 0,
            "duration_ms": index * 1000 + 7,
            "created_at": datetime.datetime(2026, 3, 2, 10, index, 5, 123456, tzinfo=paris),
        }
        for index, name in enumerate(names)
    ]

    async def record():
        try:
            return await arecord_usages(calls)
        finally:
            await aclose()

    assert asyncio.run(record()) == [None] * len(names)
    stored = list(
        UsageEvent.objects.order_by("duration_ms").values_list(
            "developer_id", "organization_id", "tool_name", "ok", "duration_ms", "created_at"
        )
    )
    assert stored == [
        (developer.id, developer.organization_id, c["tool_name"], c["ok"], c["duration_ms"], c["created_at"])
        for c in calls
    ]
