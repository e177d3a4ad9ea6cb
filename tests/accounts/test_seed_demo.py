"""`manage.py seed_demo`, which `make run` runs on every start: a working demo, never duplicated."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from djstripe.models import WebhookEndpoint

from accounts.authentication import authenticate_key
from accounts.exceptions import KeyRefused
from accounts.models import Developer, Organization

pytestmark = pytest.mark.django_db


def seed(**options) -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def printed(text: str, label: str) -> str:
    match = re.search(rf"^  {label}\s+(\S+)", text, re.MULTILINE)
    assert match, text
    return match.group(1)


def test_twice_gives_one_demo_with_a_working_key_and_a_stable_webhook_url(settings):
    settings.DEBUG = True
    first = seed()
    second = seed()

    assert Organization.objects.count() == 1 and Developer.objects.count() == 1
    assert get_user_model().objects.filter(username="admin", is_staff=True, is_superuser=True).count() == 1
    assert WebhookEndpoint.objects.count() == 1

    old_key, new_key = printed(first, "API key"), printed(second, "API key")
    assert old_key != new_key
    assert authenticate_key(new_key).email == "dev@demo.example"
    with pytest.raises(KeyRefused):
        authenticate_key(old_key)

    url = printed(second, "webhooks")
    assert url == printed(first, "webhooks") == WebhookEndpoint.objects.get().url
    assert url.startswith("http://127.0.0.1:8000/stripe/webhook/")
    assert WebhookEndpoint.objects.get().secret not in first + second  # the endpoint's secret is never shown

    client = Client()
    assert client.login(username="admin", password="hotcross-demo")
    assert client.get("/admin/accounts/organization/").status_code == 200


def test_a_secret_set_for_stripe_listen_survives_the_next_start(settings):
    settings.DEBUG = True
    seed()
    call_command("stripe_webhook_endpoint", "--secret", "whsec_fromStripeListen0123456789", stdout=io.StringIO())
    seed()
    assert WebhookEndpoint.objects.get().secret == "whsec_fromStripeListen0123456789"


def test_refuses_without_debug_because_it_sets_a_known_password(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true"):
        seed()
    assert not get_user_model().objects.filter(username="admin").exists()
