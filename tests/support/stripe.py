"""Stripe in tests: no network but 127.0.0.1 (`_only_loopback`), a local Stripe API stub (`stripe_stub`), signed
webhook deliveries (`webhook`). Conftest files import the fixtures they need from here."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import stripe
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client

from tests.support import stripe_data
from tests.support.stripe_stub import StripeStub

ALLOWED_HOST = "127.0.0.1"
WEBHOOK_SECRET = "whsec_hotcrossTestsOnlyNotASecret0000"


class NetworkRefused(ConnectionRefusedError):
    pass


@pytest.fixture(autouse=True)
def _only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection and name lookup except 127.0.0.1, so nothing here can reach Stripe."""
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] != ALLOWED_HOST:
            raise NetworkRefused(f"tests may only connect to {ALLOWED_HOST}, not {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (ALLOWED_HOST, ALLOWED_HOST.encode(), None):
            raise NetworkRefused(f"tests may only look up {ALLOWED_HOST}, not {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def stripe_stub(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[StripeStub]:
    """The Stripe API for this test: dj-stripe's calls go to a local stub (what STRIPE_API_HOST does at start-up)."""
    stub = StripeStub().start()
    settings.STRIPE_API_HOST = stub.url
    monkeypatch.setattr(stripe, "api_base", stub.url)
    monkeypatch.setattr(stripe, "max_network_retries", 0)
    try:
        yield stub
    finally:
        stub.stop()


@dataclass
class Webhook:
    """The endpoint made by `manage.py stripe_webhook_endpoint`, and a way to deliver events to it as Stripe does."""

    path: str
    secret: str
    client: Client

    def deliver(self, event: dict[str, Any], *, secret: str | None = None, signature: str | None = "") -> HttpResponse:
        payload = stripe_data.dumps(event)
        headers = {}
        if signature is not None:
            headers["Stripe-Signature"] = signature or stripe_data.signature(payload, secret or self.secret)
        return self.client.post(self.path, data=payload, content_type="application/json", headers=headers)


@pytest.fixture
def webhook(db: Any, stripe_stub: StripeStub) -> Webhook:
    from io import StringIO

    out = StringIO()
    call_command("stripe_webhook_endpoint", "--secret", WEBHOOK_SECRET, stdout=out, stderr=StringIO())
    return Webhook(path=out.getvalue().strip(), secret=WEBHOOK_SECRET, client=Client(enforce_csrf_checks=True))
