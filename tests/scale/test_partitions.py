"""Raw usage events: monthly partitions on PostgreSQL (created ahead, a default one for any other time), the retention
that drops whole old months while the rollups stay; SQLite's plain table deletes the same months."""

from __future__ import annotations

import datetime

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts import partitions
from accounts.exceptions import InvalidInput
from accounts.models import UsageEvent, UsageRollup
from accounts.selectors import monthly_usage
from accounts.services import record_usages
from accounts.services.usage_upkeep import create_usage_partitions, prune_raw_usage, rebuild_rollups
from tests.factories import DeveloperFactory

pytestmark = pytest.mark.django_db(transaction=True)

UTC = datetime.UTC


def record(developer, *times: datetime.datetime) -> None:
    calls = [
        {
            "developer_id": developer.id,
            "organization_id": developer.organization_id,
            "tool_name": "echo",
            "ok": True,
            "duration_ms": 1,
            "created_at": when,
        }
        for when in times
    ]
    assert record_usages(calls) == [None] * len(times)


def partition_of(event_time: datetime.datetime) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM accounts_usageevent WHERE created_at = %s", [event_time])
        return cursor.fetchone()[0]


@pytest.mark.postgres_only
def test_events_go_to_their_month_and_a_month_without_a_partition_goes_to_the_default_one():
    assert partitions.is_partitioned(connection)
    now = timezone.now()
    names = [p.name for p in partitions.partitions(connection)]
    this_month = partitions.month_start(now)
    assert partitions.partition_name(this_month) in names  # the migration made this month and three ahead
    assert partitions.DEFAULT in names

    developer = DeveloperFactory()
    far = datetime.datetime(2031, 5, 17, 8, tzinfo=UTC)
    record(developer, now, far)
    assert partition_of(now) == partitions.partition_name(this_month)
    assert partition_of(far) == partitions.DEFAULT

    # Creating the month's partition moves its rows out of the default one; nothing is lost.
    created = partitions.create_partitions(connection, since=far, until=far)
    try:
        assert created == ["accounts_usageevent_p203105"]
        assert partition_of(far) == "accounts_usageevent_p203105"
        assert UsageEvent.objects.count() == 2
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE accounts_usageevent_p203105")


@pytest.mark.postgres_only
def test_the_command_creates_partitions_ahead_and_lists_them(capsys):
    call_command("usage", "partitions", "--ahead", "5")
    out = capsys.readouterr().out
    month = partitions.month_start(timezone.now())
    for _ in range(5):
        month = partitions.next_month(month)
    assert partitions.partition_name(month) in out
    assert "default (times without a partition)" in out
    with pytest.raises(InvalidInput):
        create_usage_partitions(ahead_months=99)


def test_the_retention_drops_whole_old_months_and_keeps_their_rollups(settings):
    settings.HOTCROSS_USAGE_RAW_RETENTION_DAYS = 400
    developer = DeveloperFactory()
    now = timezone.now()
    old = now - datetime.timedelta(days=500)  # a month entirely older than 400 days
    borderline = now - datetime.timedelta(days=399)  # within the retention
    if partitions.is_partitioned(connection):
        partitions.create_partitions(connection, since=old, until=borderline)
    record(developer, old, old, borderline, now)

    pruned = prune_raw_usage()
    assert pruned.before == partitions.month_start(now - datetime.timedelta(days=400))
    if partitions.is_partitioned(connection):
        assert partitions.partition_name(partitions.month_start(old)) in pruned.partitions
        assert partitions.partition_name(partitions.month_start(borderline)) not in pruned.partitions
    else:
        assert pruned.rows == 2
    assert sorted(UsageEvent.objects.values_list("created_at", flat=True)) == [borderline, now]

    # The rollups stay: the month's figures are still there.
    assert UsageRollup.objects.filter(day=old.astimezone(UTC).date()).get().calls == 2
    figures = monthly_usage(developer_id=developer.id, organization_id=developer.organization_id, now=old)
    assert figures.developer_total == 2

    # And they cannot be rebuilt from raw events that are gone.
    with pytest.raises(InvalidInput, match="no longer kept"):
        rebuild_rollups(since=old.astimezone(UTC).date())
    assert UsageRollup.objects.filter(day=old.astimezone(UTC).date()).exists()


def test_prune_refuses_a_retention_below_one_day():
    for days in (0, -5, 1.5, True):
        with pytest.raises(InvalidInput, match="whole number of days"):
            prune_raw_usage(retention_days=days)


def test_the_prune_command_says_what_it_dropped(capsys, settings):
    settings.HOTCROSS_USAGE_RAW_RETENTION_DAYS = 30
    call_command("usage", "prune")
    out = capsys.readouterr().out
    assert "The rollups are kept." in out
