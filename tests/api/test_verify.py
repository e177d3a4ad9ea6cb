"""POST /api/v1/keys/verify: the principal for a working key, the key check's refusal otherwise, a clear 400 for a
client mistake; cacheable at most 60 s; never the key in the answer."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.utils import timezone

from accounts import services
from tests.factories import DeveloperFactory, OrganizationFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/keys/verify"


def verify(key: str | None = None, *, header: str = "Authorization", body: bytes = b"", **extra: str):
    headers = dict(extra)
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "Authorization" else key
    return Client().post(URL, data=body, content_type="application/json", headers=headers)


def max_age(response) -> int:
    directives = dict(part.strip().partition("=")[::2] for part in response["Cache-Control"].split(",") if "=" in part)
    return int(directives["max-age"])


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_a_working_key_gets_its_principal(header):
    org = OrganizationFactory(name="Acme", max_seats=3, subscription_status="trialing")
    developer = DeveloperFactory(organization=org, email="ada@acme.test", first_name="Ada", last_name="Lovelace")
    DeveloperFactory(organization=org)
    response = verify(developer.plain_key, header=header)
    assert response.status_code == 200
    assert response.json() == {
        "developer": {"id": str(developer.id), "email": "ada@acme.test", "name": "Ada Lovelace"},
        "organization": {
            "id": str(org.id),
            "name": "Acme",
            "subscription_status": "trialing",
            "seats_used": 2,
            "max_seats": 3,
        },
        "entitlements": {  # no plan: every tool, no limit (issue 16)
            "code": None,
            "name": None,
            "tools": "all",
            "prompts": "all",
            "resources": "all",
            "rate_limit_per_developer_per_minute": None,
            "rate_limit_per_organization_per_minute": None,
            "monthly_calls_per_seat": None,
            "monthly_cap": None,
            "at_cap": None,
        },
        "cache_seconds": 60,
    }
    assert 0 < max_age(response) <= 60
    assert "private" in response["Cache-Control"]
    assert developer.plain_key not in response.content.decode()


def test_a_revoked_key_is_403_with_the_stable_code():
    developer = DeveloperFactory()
    services.revoke_key(developer=developer)
    response = verify(developer.plain_key)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "key_revoked"
    assert error["message"].startswith("This API key was revoked")
    assert max_age(response) <= 60
    assert developer.plain_key not in response.content.decode()


def test_a_developer_beyond_the_seats_is_403_seat_limit_exceeded():
    org = OrganizationFactory(max_seats=2)
    developers = [
        DeveloperFactory(organization=org, seat_claimed_at=timezone.now() - datetime.timedelta(days=d))
        for d in (3, 2, 1)
    ]
    services.set_seats(organization=org, max_seats=2)
    assert verify(developers[0].plain_key).status_code == 200
    response = verify(developers[2].plain_key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "seat_limit_exceeded"


@pytest.mark.parametrize(
    "key", ["hc_live_" + "z" * 40, "garbage", "hc_live_\u00e9\u00e9", "x" * 5000, "' OR 1=1 --", "\x00"]
)
def test_an_unknown_or_garbage_key_is_401_and_never_echoed(key):
    response = verify(key)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_key"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert key.strip() not in response.content.decode() or len(key.strip()) < 2


def test_no_key_is_401_saying_how_to_send_one():
    response = verify(None)
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["error"]["message"]


def test_two_different_keys_are_400():
    a, b = DeveloperFactory(), DeveloperFactory()
    response = verify(a.plain_key, **{"X-API-Key": b.plain_key})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert a.plain_key not in response.content.decode() and b.plain_key not in response.content.decode()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"x" * (1024 * 1024), "body_too_large"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        (b"[" * 100_000, "body_too_large"),
        (b"[" * 5_000 + b"]" * 5_000, "invalid_json"),  # nested deeper than the parser goes,
    ],
)
def test_a_bad_body_is_a_clear_400(body, code):
    developer = DeveloperFactory()
    response = verify(developer.plain_key, body=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert developer.plain_key not in response.content.decode()


def test_only_post():
    developer = DeveloperFactory()
    response = Client().get(URL, headers={"Authorization": f"Bearer {developer.plain_key}"})
    assert response.status_code == 405


def test_the_cache_lifetime_setting_is_capped_at_60_seconds(settings):
    settings.HOTCROSS_API_VERIFY_MAX_AGE = 3600
    response = verify(DeveloperFactory().plain_key)
    assert max_age(response) == 60
    settings.HOTCROSS_API_VERIFY_MAX_AGE = 5
    assert max_age(verify(DeveloperFactory().plain_key)) == 5


def test_the_request_log_learns_the_developer_of_a_working_key_only(monkeypatch):
    from infra import request_log

    noted = []
    monkeypatch.setattr(request_log, "note_developer", noted.append)
    developer = DeveloperFactory()
    assert verify(developer.plain_key).status_code == 200
    assert noted == [developer.id]
    services.revoke_key(developer=developer)
    assert verify(developer.plain_key).status_code == 403
    assert verify("hc_live_unknown").status_code == 401
    assert noted == [developer.id]
