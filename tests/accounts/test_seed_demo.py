"""`manage.py seed_demo`, which `make run` runs on every start: a working demo, never duplicated, and never undoing
what staff changed since (a password, their sessions, the demo developer's key)."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from djstripe.models import WebhookEndpoint

from accounts.authentication import authenticate_key
from accounts.exceptions import KeyRefused
from accounts.models import Developer, Organization
from tests.factories import DeveloperFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _debug(settings):
    settings.DEBUG = True
    settings.HOTCROSS_PUBLIC_URL = "http://127.0.0.1:8123"


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def printed(text: str, label: str) -> str:
    match = re.search(rf"^  {label}\s+(\S+)", text, re.MULTILINE)
    assert match, text
    return match.group(1)


def signed_in(username: str, password: str) -> Client:
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    assert response.status_code == 302, response.content[:500]
    return client


def test_first_run_creates_the_demo_and_shows_the_key_once():
    out = seed()

    assert Organization.objects.count() == 1 and Developer.objects.count() == 1
    assert get_user_model().objects.filter(username="admin", is_staff=True, is_superuser=True).count() == 1
    key = printed(out, "API key")
    assert authenticate_key(key).email == "dev@demo.example"
    assert "shown this once" in out
    assert "login admin / hotcross-demo" in out
    assert signed_in("admin", "hotcross-demo").get("/admin/accounts/organization/").status_code == 200

    # Every URL comes from HOTCROSS_PUBLIC_URL (what `make run` serves).
    assert printed(out, "admin") == "http://127.0.0.1:8123/admin/"
    assert printed(out, "webhooks") == WebhookEndpoint.objects.get().url
    assert WebhookEndpoint.objects.get().url.startswith("http://127.0.0.1:8123/stripe/webhook/")
    assert WebhookEndpoint.objects.get().secret not in out  # the endpoint's secret is never shown
    # Both headers that carry a key, and the key-only endpoint (issue 31: the banner named the Bearer header only).
    assert "Authorization: Bearer <key>  (or X-API-Key: <key>)" in out
    assert "http://127.0.0.1:8123/mcp/key" in out
    assert "sign-in mail printed" not in out  # the suite's mail is not printed


def test_the_banner_says_where_sign_in_codes_go_when_mail_is_printed(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    assert "sign-in mail printed in this terminal, not sent" in seed()


def test_the_stdio_line_works_from_any_directory():
    out = seed()
    line = next(line for line in out.splitlines() if "MCP (stdio)" in line)
    python, manage = line.split()[-3:-1]
    assert python == sys.executable and Path(python).is_absolute()
    assert Path(manage).is_absolute() and Path(manage) == Path(django_settings.BASE_DIR) / "manage.py"
    assert Path(manage).is_file()


def test_a_second_run_leaves_password_sessions_and_key_alone():
    first = seed()
    key = printed(first, "API key")
    user = get_user_model().objects.get(username="admin")
    user.set_password("changed-by-staff-1")
    user.save()
    client = signed_in("admin", "changed-by-staff-1")
    developer = Developer.objects.get()

    second = seed()

    # The password staff chose still works, the old default does not, and the staff member is still signed in.
    assert client.get("/admin/accounts/organization/").status_code == 200
    signed_in("admin", "changed-by-staff-1")
    refused = Client().post("/admin/login/?next=/admin/", {"username": "admin", "password": "hotcross-demo"})
    assert refused.status_code == 200 and b"Please enter the correct username and password" in refused.content
    assert "hotcross-demo" not in second and "login admin (your password" in second
    # The key is the same one, still working, and not shown again: its prefix and how to get a new one instead.
    after = Developer.objects.get()
    assert (after.api_key_hash, after.api_key_created_at) == (developer.api_key_hash, developer.api_key_created_at)
    assert authenticate_key(key).email == "dev@demo.example"
    assert key not in second
    assert printed(second, "API key") == f"{developer.api_key_prefix}…"
    assert f"orgs rotate-key {developer.id}" in second and "make run ROTATE_DEMO_KEY=1" in second
    assert (Organization.objects.count(), Developer.objects.count(), WebhookEndpoint.objects.count()) == (1, 1, 1)
    assert printed(second, "webhooks") == printed(first, "webhooks")


def test_a_revoked_demo_key_stays_revoked_and_says_so():
    seed()
    developer = Developer.objects.get()
    call_command("orgs", "revoke-dev", str(developer.id), stdout=io.StringIO())
    out = seed()
    assert "(revoked;" in out
    assert Developer.objects.get().key_state == "revoked"


def test_rotate_key_gives_a_new_key_once_and_the_old_one_stops():
    old_key = printed(seed(), "API key")
    out = seed("--rotate-key")
    new_key = printed(out, "API key")
    assert new_key != old_key and new_key.startswith("hc_live_")
    assert authenticate_key(new_key).email == "dev@demo.example"
    with pytest.raises(KeyRefused):
        authenticate_key(old_key)


def test_an_existing_developer_elsewhere_is_left_where_it_is():
    other = OrganizationFactory(name="Elsewhere Inc")
    DeveloperFactory(organization=other, email="DEV@demo.example")
    out = seed()
    assert Developer.objects.count() == 1
    assert "(in Elsewhere Inc" in out


def test_a_secret_set_for_stripe_listen_survives_the_next_start():
    seed()
    call_command("stripe_webhook_endpoint", "--secret", "whsec_fromStripeListen0123456789", stdout=io.StringIO())
    seed()
    assert WebhookEndpoint.objects.get().secret == "whsec_fromStripeListen0123456789"


def test_refuses_without_debug_because_it_sets_a_known_password(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true"):
        seed()
    assert not get_user_model().objects.filter(username="admin").exists()


def test_a_run_on_another_port_moves_the_demo_endpoint_instead_of_adding_one(settings):
    """Issue 31: three `make run`s on three ports left three webhook endpoints."""
    seed()
    first = WebhookEndpoint.objects.get()
    settings.HOTCROSS_PUBLIC_URL = "http://127.0.0.1:8124"
    out = seed()
    moved = WebhookEndpoint.objects.get()
    assert (moved.pk, moved.djstripe_uuid, moved.secret) == (first.pk, first.djstripe_uuid, first.secret)
    assert moved.url.startswith("http://127.0.0.1:8124/stripe/webhook/")
    assert printed(out, "webhooks") == moved.url
