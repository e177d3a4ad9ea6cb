"""Hostile input for the key-check API (the deterministic corpus of tests/security): never a server error, never
the key in an answer, nothing written by a refused request, no key that is not the key accepted."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from django.test import Client

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.support.corpus import json_documents, json_values
from tests.support.corpus_keys import key_mutations

pytestmark = pytest.mark.django_db


def post(path: str, body: bytes, **headers: str):
    return Client(raise_request_exception=False).post(path, data=body, content_type="application/json", headers=headers)


@pytest.mark.parametrize("path", ["/api/v1/keys/verify", "/api/v1/usage"])
def test_hostile_bodies_get_json_answers_and_write_nothing(path):
    developer = DeveloperFactory()
    rng = random.Random(14)
    for body in itertools.islice(json_documents(rng), 300):
        response = post(path, body, **{"X-API-Key": developer.plain_key})
        assert response.status_code in (200, 400), (body[:80], response.status_code)
        answer = response.json()
        assert developer.plain_key not in response.content.decode()
        if response.status_code == 400:
            assert answer["error"]["code"] and answer["error"]["message"]
    if path == "/api/v1/usage":
        assert not UsageEvent.objects.exists()


def test_hostile_event_fields_are_400_and_write_nothing():
    developer = DeveloperFactory()
    rng = random.Random(41)
    fields = ("id", "tool", "at", "ok", "duration_ms", "developer_id", "organization_id")
    for _ in range(300):
        event = {"id": "e", "tool": "t", "at": "2026-12-03T10:00:00Z", "ok": True, "duration_ms": 1}
        event[rng.choice(fields)] = json_values(rng)
        try:
            body = json.dumps({"events": [event]}).encode()
        except (ValueError, TypeError):
            continue
        response = post("/api/v1/usage", body, **{"X-API-Key": developer.plain_key})
        assert response.status_code in (200, 400, 403), (event, response.status_code)
    assert UsageEvent.objects.count() <= 300  # only whole, valid events of the key's own developer, if any
    assert set(UsageEvent.objects.values_list("developer_id", flat=True)) <= {developer.id}


def test_keys_that_are_not_the_key_are_refused():
    developer = DeveloperFactory()
    rng = random.Random(7)
    tried = 0
    for candidate in itertools.islice(key_mutations(developer.plain_key, rng), 400):
        if not candidate.isprintable() or not candidate.isascii() or candidate.strip() == developer.plain_key:
            continue  # what an HTTP client cannot send as a header value
        tried += 1
        for header in ({"X-API-Key": candidate}, {"Authorization": f"Bearer {candidate}"}):
            response = post("/api/v1/keys/verify", b"", **header)
            assert response.status_code in (400, 401), (candidate, response.status_code)
            if len(candidate) > 12:
                assert candidate not in response.content.decode()
    assert tried > 50
