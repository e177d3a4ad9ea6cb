"""Usage rollups: written with every batch of events (both writers), equal to the raw events, rebuilt and checked by
`manage.py usage rebuild-rollups`, rolled up from existing events by the migration, and what the reads use."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.exceptions import InvalidInput
from accounts.models import UsageEvent, UsageRollup
from accounts.selectors import dashboard_figures, monthly_usage, usage_per_developer_per_day
from accounts.services import arecord_usages, record_usages
from accounts.services.usage_upkeep import check_rollups, rebuild_rollups
from infra.db import aclose
from tests.factories import DeveloperFactory, UsageEventFactory
from tests.support.legacy import migrate

UTC = datetime.UTC
PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))
DAY = datetime.date(2026, 3, 1)


def rollups() -> dict[tuple, tuple[int, int, int]]:
    return {(r.developer_id, r.tool_name, r.day): (r.calls, r.errors, r.duration_ms) for r in UsageRollup.objects.all()}


def calls_for(developer, gone_id: uuid.UUID) -> list[dict]:
    base = {"developer_id": developer.id, "organization_id": developer.organization_id}

    def call(tool: str, ok: bool, ms: int, *when: int, tz: datetime.tzinfo = UTC) -> dict:
        return {
            **base,
            "tool_name": tool,
            "ok": ok,
            "duration_ms": ms,
            "created_at": datetime.datetime(*when, tzinfo=tz),
        }

    return [
        call("echo", True, 5, 2026, 3, 1, 9),
        call("echo", False, 7, 2026, 3, 1, 23, 59),
        call("echo", True, 1, 2026, 3, 2, 0, 30, tz=PLUS_TWO),  # still the 1st in UTC: rollups have UTC days
        call("echo", True, 2, 2026, 3, 2, 0, 0),
        call("whoami", True, 3, 2026, 3, 1, 12),
        {**base, "tool_name": " ", "ok": True, "duration_ms": 1},  # refused: no tool name; not in the rollups either
        {**base, "developer_id": gone_id, "tool_name": "echo", "ok": True, "duration_ms": 100},  # developer gone
    ]


def good_calls(developer) -> list[dict]:
    """The calls that are recorded (outside a transactional test a missing developer is only found at commit)."""
    return calls_for(developer, uuid.uuid4())[:5]


def expected_for(developer) -> dict[tuple, tuple[int, int, int]]:
    return {
        (developer.id, "echo", DAY): (3, 1, 13),
        (developer.id, "echo", DAY + datetime.timedelta(days=1)): (1, 0, 2),
        (developer.id, "whoami", DAY): (1, 0, 3),
    }


@pytest.mark.django_db(transaction=True)
def test_record_usages_adds_each_batch_to_the_rollups_of_its_utc_days():
    developer = DeveloperFactory()
    outcomes = record_usages(calls_for(developer, uuid.uuid4()))
    assert [type(o).__name__ for o in outcomes][-2:] == ["InvalidInput", "NotFound"]
    assert rollups() == expected_for(developer)
    record_usages(calls_for(developer, uuid.uuid4())[:1])  # a second batch adds to the rows there are
    assert rollups()[(developer.id, "echo", DAY)] == (4, 1, 18)
    assert check_rollups(since=DAY) == []


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_arecord_usages_writes_events_and_rollups_in_one_statement():
    developer = DeveloperFactory()

    async def record(calls):
        try:
            return await arecord_usages(calls)
        finally:
            await aclose()

    outcomes = asyncio.run(record(calls_for(developer, uuid.uuid4())))
    assert [o is None for o in outcomes] == [True] * 5 + [False, False]
    assert rollups() == expected_for(developer)
    asyncio.run(record(calls_for(developer, uuid.uuid4())[:1]))
    assert rollups()[(developer.id, "echo", DAY)] == (4, 1, 18)
    assert check_rollups(since=DAY) == []
    assert UsageEvent.objects.count() == 6


@pytest.mark.django_db
def test_the_reads_come_from_the_rollups_not_the_raw_events():
    """Raw events may be dropped (retention); the figures stay."""
    developer = DeveloperFactory()
    now = datetime.datetime(2026, 3, 2, 12, tzinfo=UTC)
    record_usages(good_calls(developer))
    UsageEvent.objects.all().delete()

    month = monthly_usage(developer_id=developer.id, organization_id=developer.organization_id, now=now)
    assert (month.by_tool, month.developer_total, month.organization_total) == ({"echo": 4, "whoami": 1}, 5, 5)
    _, rows = usage_per_developer_per_day(developer.organization, days=30, now=now)
    assert [(row["day"], row["calls"], row["errors"]) for row in rows] == [
        (DAY, 4, 1),
        (DAY + datetime.timedelta(days=1), 1, 0),
    ]
    figures = dashboard_figures(now=now)
    assert [(d.day, d.calls, d.errors) for d in figures.per_day] == [
        (DAY, 4, 1),
        (DAY + datetime.timedelta(days=1), 1, 0),
    ]
    assert (figures.calls_this_month, figures.errors_this_month, figures.calls_today) == (5, 1, 1)


def _tamper(developer) -> None:
    """Rollups that no longer match the events: one row wrong, one missing, one that has no events."""
    UsageRollup.objects.filter(developer=developer, tool_name="echo", day=DAY).update(calls=999)
    UsageRollup.objects.filter(developer=developer, tool_name="whoami").delete()
    UsageRollup.objects.create(
        organization=developer.organization, developer=developer, tool_name="ghost", day=DAY, calls=2
    )


@pytest.mark.django_db
def test_check_finds_each_difference_and_rebuild_repairs_only_its_range():
    developer = DeveloperFactory()
    record_usages(good_calls(developer))
    earlier = datetime.datetime(2026, 2, 27, 10, tzinfo=UTC)
    UsageEventFactory(developer=developer, tool_name="old", created_at=earlier)
    UsageRollup.objects.filter(tool_name="old").update(calls=50)  # wrong, but before the range rebuilt below
    _tamper(developer)

    found = {(d.tool_name, d.day): (d.events, d.rollup) for d in check_rollups(since=DAY)}
    assert found == {
        ("echo", DAY): ((3, 1, 13), (999, 1, 13)),
        ("whoami", DAY): ((1, 0, 3), (0, 0, 0)),
        ("ghost", DAY): ((0, 0, 0), (2, 0, 0)),
    }
    assert len(check_rollups(since=DAY, until=DAY + datetime.timedelta(days=1))) == 3
    assert check_rollups(since=DAY + datetime.timedelta(days=1)) == []

    rebuild_rollups(since=DAY)
    assert rollups() == {**expected_for(developer), (developer.id, "old", earlier.date()): (50, 0, 1)}
    assert check_rollups(since=DAY) == []
    assert len(check_rollups(since=datetime.date(2026, 2, 1))) == 1  # the day before the range: untouched


@pytest.mark.django_db
def test_rebuild_refuses_a_range_that_ends_before_it_starts():
    with pytest.raises(InvalidInput, match="must be after"):
        rebuild_rollups(since=DAY, until=DAY)


@pytest.mark.django_db
def test_the_command_checks_rebuilds_and_refuses_bad_days(capsys):
    developer = DeveloperFactory()
    record_usages(good_calls(developer))
    call_command("usage", "rebuild-rollups", "--since", "2026-03-01", "--check")
    assert "equal the raw events" in capsys.readouterr().out

    _tamper(developer)
    with pytest.raises(CommandError, match="3 rollups of 2026-03-01 onwards differ"):
        call_command("usage", "rebuild-rollups", "--since", "2026-03-01", "--check")
    assert "tool ghost" in capsys.readouterr().out
    assert UsageRollup.objects.filter(tool_name="ghost").exists()  # --check changes nothing

    call_command("usage", "rebuild-rollups", "--since", "2026-03-01", "--until", "2026-03-03")
    assert "2026-03-01…2026-03-02 rebuilt" in capsys.readouterr().out
    assert rollups() == expected_for(developer)

    with pytest.raises(CommandError, match="'March' is not a day"):
        call_command("usage", "rebuild-rollups", "--since", "March")
    with pytest.raises(CommandError, match="must be after"):
        call_command("usage", "rebuild-rollups", "--since", "2026-03-02", "--until", "2026-03-01")
    assert rollups() == expected_for(developer)


@pytest.mark.django_db(transaction=True)
def test_the_migration_rolls_up_the_events_that_existed_before_it(monkeypatch):
    developer = DeveloperFactory()
    record_usages(good_calls(developer))
    migrate(("accounts", "0007_replaced_keys_and_key_labels"))  # no rollup table; the events stay
    try:
        monkeypatch.setattr("accounts.rollups.BACKFILL_BATCH", 2)  # several batches, as on a big table
        migrate()
    finally:
        migrate()
    assert rollups() == expected_for(developer)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM accounts_usageevent")
        assert cursor.fetchone()[0] == 5
