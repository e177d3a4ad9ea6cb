"""POST /api/v1/usage: batches of the key's own developer's tool calls, idempotent by client event id; refused as
a whole (nothing written) for another developer's events, events outside the window, more than 1 000 events, or a
malformed body."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import UsageEvent
from api.models import ReportedEvent
from tests.factories import DeveloperFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/usage"


def event(n: int | str, **overrides) -> dict:
    return {
        "id": f"evt-{n}",
        "tool": "search_code",
        "at": (timezone.now() - datetime.timedelta(minutes=1)).isoformat(),
        "ok": True,
        "duration_ms": 12,
        **overrides,
    }


def report(developer, events=None, *, body: bytes | None = None):
    data = body if body is not None else json.dumps({"events": events})
    return Client().post(URL, data=data, content_type="application/json", headers={"X-API-Key": developer.plain_key})


def test_a_batch_is_recorded_and_a_retry_is_not_counted_twice():
    developer = DeveloperFactory()
    batch = [event(1), event(2, ok=False, duration_ms=900, tool="index_repo")]
    first = report(developer, batch)
    assert first.status_code == 200
    assert first.json() == {"recorded": 2, "duplicates": []}
    retry = report(developer, [*batch, event(3)])
    assert retry.json() == {"recorded": 1, "duplicates": ["evt-1", "evt-2"]}
    events = UsageEvent.objects.filter(developer=developer)
    assert events.count() == 3
    failed = events.get(tool_name="index_repo")
    assert (failed.ok, failed.duration_ms, failed.organization_id) == (False, 900, developer.organization_id)
    assert first["Cache-Control"] == "no-store"


def test_an_id_twice_in_one_batch_counts_once():
    developer = DeveloperFactory()
    assert report(developer, [event(1), event(1)]).json() == {"recorded": 1, "duplicates": ["evt-1"]}


def test_ids_are_per_developer():
    a, b = DeveloperFactory(), DeveloperFactory()
    assert report(a, [event(1)]).json()["recorded"] == 1
    assert report(b, [event(1)]).json()["recorded"] == 1
    assert ReportedEvent.objects.count() == 2


def test_events_of_another_developer_refuse_the_batch():
    developer, other = DeveloperFactory(), DeveloperFactory()
    response = report(developer, [event(1), event(2, developer_id=str(other.id))])
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "other_developer"
    assert error["events"][0]["index"] == 1
    assert not UsageEvent.objects.exists() and not ReportedEvent.objects.exists()
    # Naming oneself is fine.
    ok = report(developer, [event(3, developer_id=str(developer.id), organization_id=str(developer.organization_id))])
    assert ok.json()["recorded"] == 1


def test_1001_events_are_refused_and_1000_accepted():
    developer = DeveloperFactory()
    response = report(developer, [event(n) for n in range(1001)])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_events"
    assert not UsageEvent.objects.exists()
    accepted = report(developer, [event(n) for n in range(1000)])
    assert accepted.json() == {"recorded": 1000, "duplicates": []}
    assert UsageEvent.objects.filter(developer=developer).count() == 1000


def test_events_older_than_the_window_or_in_the_future_are_refused(settings):
    settings.HOTCROSS_API_USAGE_WINDOW_HOURS = 2
    developer = DeveloperFactory()
    old = event(1, at=(timezone.now() - datetime.timedelta(hours=3)).isoformat())
    response = report(developer, [event(0), old])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "event_too_old"
    assert "2 hours" in response.json()["error"]["message"]
    future = event(2, at=(timezone.now() + datetime.timedelta(hours=1)).isoformat())
    assert report(developer, [future]).json()["error"]["code"] == "event_in_future"
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        {"id": "x"},
        event(1, id=""),
        event(1, id="x" * 201),
        event(1, id=5),
        event(1, tool=""),
        event(1, tool=["a"]),
        event(1, tool="search\x00code"),  # NUL: PostgreSQL cannot store it
        event(1, id="evt\n1"),
        event(1, tool="\ud800"),  # a lone surrogate
        event(1, at="yesterday"),
        event(1, at="2026-12-03T10:00:00"),  # no time zone
        event(1, ok="yes"),
        event(1, duration_ms=-1),
        event(1, duration_ms=1.5),
        event(1, duration_ms=True),
        event(1, developer="someone"),
    ],
)
def test_wrong_types_are_a_400_naming_the_event(bad):
    developer = DeveloperFactory()
    response = report(developer, [event(0), bad])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_events"
    assert error["events"][0]["index"] == 1
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{bad json", "invalid_json"),
        (b"[]", "invalid_request"),
        (b'{"events": "many"}', "invalid_events"),
        (b"x" * (1024 * 1024), "body_too_large"),
        (b"", "invalid_request"),
    ],
)
def test_a_bad_body_is_a_400(body, code):
    developer = DeveloperFactory()
    response = report(developer, body=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_a_refused_key_reports_nothing():
    response = Client().post(
        URL,
        data=json.dumps({"events": [event(1)]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer hc_live_{uuid.uuid4().hex}"},
    )
    assert response.status_code == 401
    assert not UsageEvent.objects.exists()
