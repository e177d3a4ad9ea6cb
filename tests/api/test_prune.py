"""`manage.py usage prune` deletes the idempotency records of POST /api/v1/usage once they are older than the usage
window plus the margin (a retry that old is refused as too old, so no event can then be counted twice), and keeps the
younger ones."""

from __future__ import annotations

import datetime
import io
import json

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import UsageEvent
from api.models import ReportedEvent
from api.reported_usage import PRUNE_MARGIN, prune_reported_events
from tests.factories import DeveloperFactory, ReportedEventFactory

pytestmark = pytest.mark.django_db


def report(developer, events):
    return Client().post(
        "/api/v1/usage",
        data=json.dumps({"events": events}),
        content_type="application/json",
        headers={"X-API-Key": developer.plain_key},
    )


def event(n: int, at: datetime.datetime) -> dict:
    return {"id": f"evt-{n}", "tool": "search_code", "at": at.isoformat(), "ok": True, "duration_ms": 3}


@override_settings(HOTCROSS_API_USAGE_WINDOW_HOURS=24)
def test_usage_prune_deletes_records_older_than_the_window_and_margin_and_keeps_the_rest():
    developer = DeveloperFactory()
    now = timezone.now()
    limit = datetime.timedelta(hours=24) + PRUNE_MARGIN
    ages = {"old": limit + datetime.timedelta(minutes=5), "recent": limit - datetime.timedelta(minutes=5), "new": None}
    for name, age in ages.items():
        record = ReportedEventFactory(developer=developer, client_event_id=name)
        if age is not None:
            ReportedEvent.objects.filter(pk=record.pk).update(received_at=now - age)
    out = io.StringIO()
    call_command("usage", "prune", stdout=out)
    assert set(ReportedEvent.objects.values_list("client_event_id", flat=True)) == {"recent", "new"}
    assert "Deleted 1 reported event id" in out.getvalue()


@override_settings(HOTCROSS_API_USAGE_WINDOW_HOURS=1)
def test_a_retry_after_its_record_was_pruned_is_refused_as_too_old_not_counted_again():
    developer = DeveloperFactory()
    at = timezone.now() - datetime.timedelta(minutes=30)
    assert report(developer, [event(1, at)]).json() == {"recorded": 1, "duplicates": []}
    # Later than the window plus the margin: the record goes, and the retry must not count the event again.
    later = timezone.now() + datetime.timedelta(hours=1) + PRUNE_MARGIN + datetime.timedelta(minutes=1)
    assert prune_reported_events(now=later).deleted == 1
    assert not ReportedEvent.objects.exists()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: later)
        retry = report(developer, [event(1, at)])
    assert retry.status_code == 400
    assert retry.json()["error"]["code"] == "event_too_old"
    assert UsageEvent.objects.filter(developer=developer).count() == 1


def test_pruning_in_batches_deletes_every_old_record():
    developer = DeveloperFactory()
    old = timezone.now() - datetime.timedelta(days=30)
    ReportedEvent.objects.bulk_create(
        ReportedEvent(developer=developer, client_event_id=f"e{i}", received_at=old) for i in range(25)
    )
    assert prune_reported_events(batch_size=10).deleted == 25
    assert not ReportedEvent.objects.exists()
