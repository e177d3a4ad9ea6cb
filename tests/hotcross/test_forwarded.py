"""X-Forwarded-For through a real uvicorn (`hotcross.asgi` as production runs it): trusted only from the proxy that
BEHIND_PROXY names. Without it a client choosing its address in the header escapes neither the admin login lockout
(django-axes) nor the OAuth registration limit, even from 127.0.0.1 (which uvicorn trusts by default)."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx2
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.support.mcp import run_uvicorn, server_env
from tests.support.servers import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

PLAIN_HTTP = {"SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false"}
REGISTRATIONS = 3
REGISTRATION = {
    "client_name": "forwarded",
    "redirect_uris": ["http://127.0.0.1:9/callback"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "none",
}


@pytest.fixture
def boss():
    user = get_user_model().objects.create_superuser("boss", "boss@example.test")
    # Hashed as the server hashes (the suite's own settings hash with MD5, which the server does not know).
    user.password = PBKDF2PasswordHasher().encode("right-password-1", PBKDF2PasswordHasher().salt(), iterations=1000)
    user.save(update_fields=["password"])
    return user


def sign_in(base: str, password: str, forwarded_for: str) -> int:
    with httpx2.Client(base_url=base, headers={"X-Forwarded-For": forwarded_for}, timeout=30) as client:
        page = client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = client.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token, "username": "boss", "password": password, "next": "/admin/"},
        )
        return response.status_code


def register(base: str, forwarded_for: str) -> int:
    response = httpx2.post(
        f"{base}/oauth/register/", json=REGISTRATION, headers={"X-Forwarded-For": forwarded_for}, timeout=30
    )
    return response.status_code


def test_without_a_named_proxy_a_rotating_forwarded_for_escapes_no_limit(tmp_path, boss):
    env = {**PLAIN_HTTP, "HOTCROSS_OAUTH_REGISTRATIONS_PER_HOUR": str(REGISTRATIONS)}
    with run_uvicorn(tmp_path, **env) as server:
        failures = [sign_in(server.base, "wrong-password", f"198.51.100.{n}") for n in range(6)]
        right = sign_in(server.base, "right-password-1", "198.51.100.99")
        registrations = [register(server.base, f"203.0.113.{n}") for n in range(REGISTRATIONS + 2)]

    assert failures[:4] == [200] * 4 and failures[4:] == [429, 429]  # one address: the connection's
    assert right == 429
    assert registrations == [201] * REGISTRATIONS + [429, 429]


def test_behind_the_named_proxy_each_forwarded_client_has_its_own_limits(tmp_path, boss):
    # This test's client is the proxy (127.0.0.1); the address the proxy appended is the client's.
    env = {**PLAIN_HTTP, "HOTCROSS_OAUTH_REGISTRATIONS_PER_HOUR": str(REGISTRATIONS), "BEHIND_PROXY": "127.0.0.1"}
    with run_uvicorn(tmp_path, **env) as server:
        failures = [sign_in(server.base, "wrong-password", f"1.2.3.{n}, 203.0.113.50") for n in range(5)]
        locked = sign_in(server.base, "right-password-1", "203.0.113.50")
        elsewhere = sign_in(server.base, "right-password-1", "203.0.113.51")
        registrations = [register(server.base, f"9.9.9.{n}, 203.0.113.60") for n in range(REGISTRATIONS + 1)]
        other = register(server.base, "203.0.113.61")

    assert failures == [200] * 4 + [429]
    assert locked == 429
    assert elsewhere == 302
    assert registrations == [201] * REGISTRATIONS + [429]
    assert other == 201


def test_behind_proxy_must_name_the_proxy():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=server_env(BEHIND_PROXY="true"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "BEHIND_PROXY" in result.stderr and "Traceback" not in result.stderr
