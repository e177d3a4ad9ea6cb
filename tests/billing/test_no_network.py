"""The Stripe tests cannot reach the network, and the app starts without any Stripe key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import stripe
from django.conf import settings

from tests.support.servers import ROOT
from tests.support.stripe import NetworkRefused


def test_only_127_0_0_1_can_be_reached():
    with pytest.raises(NetworkRefused):
        socket.create_connection(("api.stripe.com", 443), timeout=1)
    with pytest.raises(NetworkRefused):
        socket.create_connection(("10.0.0.1", 443), timeout=1)
    with socket.socket() as sock, pytest.raises(NetworkRefused):
        sock.connect(("127.0.0.2", 9))


def test_the_stripe_api_is_never_stripe_s():
    assert stripe.api_base.startswith("http://127.0.0.1:")
    assert settings.STRIPE_TEST_SECRET_KEY.startswith("sk_test_")
    assert not settings.STRIPE_LIVE_SECRET_KEY
    assert not settings.STRIPE_LIVE_MODE


def test_the_app_starts_without_stripe_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DJSTRIPE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="hotcross.settings",
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'nokeys.sqlite3'}",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
