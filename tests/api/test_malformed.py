"""Malformed input on /api/v1/* is a 400 naming what is wrong, never a 500, and records nothing (security review,
issue 26 item 9): times that do not exist, NUL characters (PostgreSQL refuses them), wrong JSON types, huge numbers,
bodies that are not objects, ids longer than the column once their spaces count."""

from __future__ import annotations

import datetime
import json

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import UsageEvent
from api.models import ReportedEvent
from tests.factories import DeveloperFactory

pytestmark = pytest.mark.django_db


def event(**overrides) -> dict:
    return {
        "id": "evt-1",
        "tool": "search_code",
        "at": (timezone.now() - datetime.timedelta(minutes=1)).isoformat(),
        "ok": True,
        "duration_ms": 12,
        **overrides,
    }


def post(path: str, body: bytes | str, **headers: str):
    return Client(raise_request_exception=False).post(path, data=body, content_type="application/json", headers=headers)


def report(developer, events: list) -> object:
    return post("/api/v1/usage", json.dumps({"events": events}), **{"X-API-Key": developer.plain_key})


@pytest.mark.parametrize(
    "at",
    [
        "2026-02-30T10:00:00Z",  # no February 30th
        "2026-13-01T10:00:00Z",  # month 13
        "2026-12-03T24:00:00Z",  # hour 24
        "2026-12-03T10:00:00+25:00",  # an offset of 25 hours
        "0000-12-03T10:00:00Z",  # year 0
        "2026-12-03T10:61:00Z",
        "2026-12-03T10:00:00\x00Z",  # NUL
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    ],
)
def test_a_time_that_does_not_exist_is_a_400_naming_at_and_nothing_is_recorded(at):
    developer = DeveloperFactory()
    response = report(developer, [event(id="fine"), event(at=at)])
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_events"
    assert error["events"][0]["index"] == 1
    assert error["events"][0]["message"].startswith("'at' ")
    assert not UsageEvent.objects.exists() and not ReportedEvent.objects.exists()


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"id": " " * 10 + "x" * 195}, "'id'"),  # 205 characters as sent: more than the column holds
        ({"id": "evt\x00"}, "'id'"),
        ({"tool": "\x00"}, "'tool'"),
        ({"duration_ms": 10**40}, "'duration_ms'"),
        ({"duration_ms": 2**31}, "'duration_ms'"),
        ({"duration_ms": 1e308}, "'duration_ms'"),
        ({"ok": None}, "'ok'"),
        ({"at": 1733220000}, "'at'"),
        ({"at": ["2026-12-03T10:00:00Z"]}, "'at'"),
        ({"developer_id": 5}, "'developer_id'"),
        ({"organization_id": {"id": 1}}, "'organization_id'"),
        ({"developer_id": "\x00"}, "'developer_id'"),
    ],
)
def test_wrong_values_are_a_400_naming_the_field(fields, names):
    developer = DeveloperFactory()
    response = report(developer, [event(**fields)])
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_events"
    assert names in error["events"][0]["message"]
    assert not UsageEvent.objects.exists()


def test_an_id_of_200_characters_with_spaces_is_stored_as_sent():
    developer = DeveloperFactory()
    client_id = " " * 5 + "x" * 190 + " " * 5
    assert report(developer, [event(id=client_id)]).json() == {"recorded": 1, "duplicates": []}
    assert ReportedEvent.objects.get().client_event_id == client_id


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        '"events"',
        "5",
        "null",
        "true",
        '{"events": null}',
        '{"events": {"0": {}}}',
        '{"events": [null]}',
        '{"events": [[]]}',
        '{"events": [1e999]}',
        '{"events": [' + "9" * 5000 + "]}",  # beyond Python's digits limit for int
        '{"events": "\\u0000"}',
        '{"\\u0000": []}',
        '{"events": [{"id": "\\ud800"}]}',
        "\ufeff{}",  # a byte-order mark
        '{"events": [' * 100_000,
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/usage", "/api/v1/keys/verify"])
def test_bodies_that_are_not_what_the_endpoint_takes_are_never_a_500(path, body):
    developer = DeveloperFactory()
    response = post(path, body.encode("utf-8", "surrogatepass"), **{"X-API-Key": developer.plain_key})
    if path.endswith("verify"):
        assert response.status_code in (200, 400), response.content  # verify needs nothing from its body
    else:
        assert response.status_code == 400, response.content
    assert response.json()["error" if response.status_code == 400 else "developer"]
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/usage", "/api/v1/keys/verify"])
@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "hc_live_\x00abc"},
        {"Authorization": "Bearer \x00"},
        {"Authorization": "Bearer hc_live_" + "é" * 40},
        {"X-API-Key": "x" * 100_000},
    ],
)
def test_malformed_keys_are_a_401(path, headers):
    DeveloperFactory()
    response = post(path, json.dumps({"events": [event()]}), **headers)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "invalid_key"
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/usage", "/api/v1/keys/verify"])
@pytest.mark.parametrize("length", ["-1", "１２", "1e3", "99999999999999999999999"])
def test_a_malformed_content_length_is_a_400(path, length):
    developer = DeveloperFactory()
    response = Client(raise_request_exception=False).post(
        path,
        data=json.dumps({"events": [event()]}),
        content_type="application/json",
        headers={"X-API-Key": developer.plain_key},
        CONTENT_LENGTH=length,
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in ("invalid_request", "body_too_large")
    assert not UsageEvent.objects.exists()
