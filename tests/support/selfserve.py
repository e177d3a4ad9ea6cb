"""Self-service in tests (issue 30): a plan sold at sign-up with its Stripe price on the stub, the code of the last
mail to an address, proving an address through the sign-up pages, paying on the stub's Checkout page, delivering
the events the stub made, and signing a developer in to a test client."""

from __future__ import annotations

import http.client
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.core import mail
from django.test import Client

from accounts.models import Developer, Plan
from infra import mailer
from oauth import grants
from tests.factories import PlanFactory
from tests.support import stripe_data as sd
from tests.support.stripe import Webhook
from tests.support.stripe_stub import StripeStub

MIN_SEATS, MAX_SEATS = 2, 10


def make_signup_plan(stripe_stub: StripeStub) -> tuple[Plan, dict[str, Any]]:
    """A plan sold at sign-up (2 to 10 seats), its per-seat price on the stub naming it (`hotcross_plan`)."""
    plan = PlanFactory(code="team", name="Team", signup_min_seats=MIN_SEATS, signup_max_seats=MAX_SEATS)
    prod = sd.product()
    price = sd.price(prod, {"hotcross_plan": plan.code})
    stripe_stub.put(prod, price)
    plan.stripe_price_id = price["id"]
    plan.save(update_fields=["stripe_price_id"])
    return plan, price


def mailed_code(address: str) -> str:
    """The 6-digit code of the last mail sent to `address` (mail leaves after the answer, from a thread)."""
    assert mailer.wait_idle(timeout=10)
    mails = [m for m in mail.outbox if address.lower() in [to.lower() for to in m.to]]
    assert mails, f"no mail to {address}"
    return re.findall(r"\b(\d{6})\b", mails[-1].subject)[-1]


def prove_signup_address(client: Client, email: str) -> None:
    """Through `/signup/` and `/signup/code/` with the mailed code: the session holds the proven address."""
    response = client.post("/signup/", {"email": email})
    assert response.status_code == 302, response.content.decode()[:500]
    response = client.post("/signup/code/", {"code": mailed_code(email)})
    assert response.status_code == 302 and response["Location"] == "/signup/organization/"


def browser_post(url: str, form: dict[str, Any]) -> tuple[int, str, str]:
    """POST a form to a page of the stub as a browser would: (status, Location, body)."""
    split = urlsplit(url)
    connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port or 80, timeout=10)
    try:
        body = urlencode(form)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        connection.request("POST", split.path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.getheader("Location") or "", answer.read().decode()
    finally:
        connection.close()


def browser_get(url: str) -> tuple[int, str]:
    split = urlsplit(url)
    connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port or 80, timeout=10)
    try:
        connection.request("GET", split.path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def local_path(url: str) -> str:
    """`http://testserver/signup/done/?session_id=…` → the path and query, for the test client."""
    split = urlsplit(url)
    return f"{split.path}?{split.query}" if split.query else split.path


def deliver(webhook: Webhook, events: list[dict[str, Any]]) -> list[int]:
    return [webhook.deliver(event).status_code for event in events]


def sign_in(client: Client, developer: Developer) -> Client:
    client.force_login(grants.shadow_user(developer=developer))
    return client
