"""Stripe webhooks refused or faulty: unknown customers and subscriptions, bad or missing signatures, bodies that are
not events, no or a malformed Stripe key, a Stripe API that does not answer in time. Each is answered as Stripe needs
and changes nothing it should not."""

from __future__ import annotations

import logging
import time
from io import StringIO

import pytest
import stripe
from django.contrib.admin.models import LogEntry
from django.core.management import CommandError, call_command
from django.test import Client
from djstripe.models import Event, WebhookEndpoint, WebhookEventTrigger
from djstripe.models import Subscription as StripeSubscription

from accounts.billing import config
from accounts.models import Organization
from tests.factories import OrganizationFactory
from tests.support import stripe_data as sd
from tests.support.stripe import Webhook
from tests.support.webhooks import refresh

# --- refusals -------------------------------------------------------------------------------------------------------


def test_unknown_customer_is_answered_200_logged_and_creates_nothing(webhook, stripe_stub, plan, caplog):
    _, seat_price, cus = plan
    known = OrganizationFactory(subscription_status="active", max_seats=2)
    sub = sd.subscription(cus, [(seat_price, 8)])
    stripe_stub.put(sub)
    organizations_before = Organization.objects.count()
    history_before = LogEntry.objects.count()

    with caplog.at_level(logging.WARNING, logger="accounts.billing"):
        response = webhook.deliver(sd.event("customer.subscription.created", sub))

    assert response.status_code == 200
    assert f"customer {cus['id']}, which no organization has" in caplog.text
    assert Organization.objects.count() == organizations_before
    assert LogEntry.objects.count() == history_before
    assert (refresh(known).subscription_status, known.max_seats) == ("active", 2)


def test_an_event_for_a_subscription_stripe_no_longer_has_is_answered_200(webhook, stripe_stub, plan, caplog):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=2)
    gone = sd.with_status(sd.subscription(cus, [(seat_price, 9)]), "canceled")  # never put: Stripe does not have it

    with caplog.at_level(logging.WARNING, logger="accounts.billing"):
        response = webhook.deliver(sd.event("customer.subscription.deleted", gone))

    assert response.status_code == 200
    assert f"subscription {gone['id']} not synced, ignored" in caplog.text
    assert (refresh(org).subscription_status, org.max_seats) == ("active", 2)


def test_a_customer_tagged_by_another_app_is_an_unknown_customer(webhook, stripe_stub, plan, caplog):
    """Another dj-stripe app on the same Stripe account tags its customers with its own (integer) user ids."""
    _, seat_price, _ = plan
    cus = sd.customer("someone@elsewhere.test", metadata={"djstripe_subscriber": "42"})
    sub = sd.subscription(cus, [(seat_price, 2)])
    stripe_stub.put(cus, sub)

    with caplog.at_level(logging.WARNING, logger="accounts.billing"):
        response = webhook.deliver(sd.event("customer.subscription.created", sub))

    assert response.status_code == 200
    assert f"customer {cus['id']}, which no organization has" in caplog.text


def _active_organization_whose_subscription_stripe_canceled(plan, stripe_stub) -> tuple[Organization, dict]:
    """An active organization with 2 seats; Stripe (the stub) already has its subscription canceled."""
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=2)
    canceled = sd.with_status(sd.subscription(cus, [(seat_price, 1)]), "canceled")
    stripe_stub.put(canceled)
    return org, canceled


def test_a_signed_body_that_is_not_an_event_is_refused_400(webhook, stripe_stub):
    payload = "this is not json"
    header = sd.signature(payload, webhook.secret)
    response = webhook.client.post(
        webhook.path, data=payload, content_type="application/json", headers={"Stripe-Signature": header}
    )
    assert response.status_code == 400
    assert not WebhookEventTrigger.objects.exists()
    assert not Event.objects.exists()
    assert stripe_stub.requested() == []


def test_the_webhook_secret_is_never_logged_nor_stored_elsewhere(db, stripe_stub, plan, caplog):
    _, seat_price, cus = plan
    OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="trialing", max_seats=1)
    sub = sd.subscription(cus, [(seat_price, 2)])
    stripe_stub.put(sub)
    secret = "whsec_neverLogMe0123456789abcdef"

    with caplog.at_level(logging.DEBUG):
        out, err = StringIO(), StringIO()
        call_command(
            "stripe_webhook_endpoint", "--secret", secret, "--url", "http://127.0.0.1:8000", stdout=out, stderr=err
        )
        hook = Webhook(path=out.getvalue().strip(), secret=secret, client=Client(enforce_csrf_checks=True))
        assert hook.deliver(sd.event("customer.subscription.created", sub)).status_code == 200
        assert (
            hook.deliver(sd.event("customer.subscription.updated", sub), secret="whsec_wrong000000").status_code == 400
        )
        with pytest.raises(CommandError):
            call_command("stripe_webhook_endpoint", "--secret", secret, "--url", "ftp://x", stdout=out, stderr=err)

    assert secret not in caplog.text
    assert secret not in out.getvalue() + err.getvalue()
    for trigger in WebhookEventTrigger.objects.all():
        assert secret not in f"{trigger.headers} {trigger.body} {trigger.exception} {trigger.traceback}"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("wrong-secret", id="wrong-secret"),
        pytest.param("t=1,v1=deadbeef", id="garbage"),
        pytest.param("stale", id="older-than-the-tolerance"),
        pytest.param("future", id="an-hour-in-the-future"),
        pytest.param("tampered", id="payload-changed-after-signing"),
        pytest.param("non-ascii", id="non-ascii"),
        pytest.param("huge-timestamp", id="a-400-digit-timestamp"),
    ],
)
def test_a_bad_signature_is_refused_400_and_nothing_is_stored(webhook, stripe_stub, plan, signature, caplog):
    org, canceled = _active_organization_whose_subscription_stripe_canceled(plan, stripe_stub)
    event = sd.event("customer.subscription.deleted", canceled)
    payload = sd.dumps(event)
    header = {
        "wrong-secret": sd.signature(payload, "whsec_someoneElsesSecret000"),
        "t=1,v1=deadbeef": "t=1,v1=deadbeef",
        "stale": sd.signature(payload, webhook.secret, timestamp=int(time.time()) - 3600),
        "future": sd.signature(payload, webhook.secret, timestamp=int(time.time()) + 3600),
        "tampered": sd.signature(sd.dumps(sd.event("customer.subscription.created", canceled)), webhook.secret),
        "non-ascii": "t=1,v1=\u00e9",
        "huge-timestamp": "t=" + "9" * 400 + ",v1=" + "a" * 64,
    }[signature]

    with caplog.at_level(logging.DEBUG):
        response = webhook.deliver(event, signature=header)

    assert response.status_code == 400
    # Stored deliveries are Stripe's; a forged or replayed one leaves nothing behind, only one log line.
    assert not WebhookEventTrigger.objects.exists()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "webhook" in r.getMessage()] == [
        f"stripe webhook refused (400) for {WebhookEndpoint.objects.get().id}: {response.content.decode()[9:-1]}; "
        "from 127.0.0.1"
    ]
    assert not Event.objects.exists()
    assert not StripeSubscription.objects.exists()
    assert stripe_stub.requested() == []
    assert (refresh(org).subscription_status, org.max_seats) == ("active", 2)


def test_a_missing_signature_is_refused_400_and_nothing_is_stored(webhook, stripe_stub, plan):
    _, seat_price, cus = plan
    sub = sd.subscription(cus, [(seat_price, 1)])
    response = webhook.deliver(sd.event("customer.subscription.created", sub), signature=None)
    assert response.status_code == 400
    assert not WebhookEventTrigger.objects.exists()
    assert not Event.objects.exists()


def test_without_a_stripe_key_a_webhook_is_answered_503_and_changes_nothing(
    webhook, stripe_stub, plan, settings, caplog
):
    org, canceled = _active_organization_whose_subscription_stripe_canceled(plan, stripe_stub)
    settings.STRIPE_TEST_SECRET_KEY = ""

    with caplog.at_level(logging.DEBUG):
        response = webhook.deliver(sd.event("customer.subscription.deleted", canceled))

    assert response.status_code == 503  # Stripe retries until a key is configured
    assert response["Retry-After"] == "60"
    assert response.content.decode() == "No Stripe API key configured: set STRIPE_TEST_SECRET_KEY."
    assert [r.levelname for r in caplog.records if "STRIPE_TEST_SECRET_KEY" in r.getMessage()] == ["ERROR"]
    assert not WebhookEventTrigger.objects.exists()
    assert not Event.objects.exists()
    assert refresh(org).subscription_status == "active"
    assert stripe_stub.requested() == []


def test_with_a_malformed_stripe_key_a_webhook_is_answered_503_without_showing_the_key(
    webhook, stripe_stub, plan, settings, caplog
):
    org, canceled = _active_organization_whose_subscription_stripe_canceled(plan, stripe_stub)
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_truncatedSecret"

    with caplog.at_level(logging.DEBUG):
        response = webhook.deliver(sd.event("customer.subscription.deleted", canceled))

    assert response.status_code == 503
    assert response.content.decode().startswith("STRIPE_TEST_SECRET_KEY is not a Stripe test-mode secret key")
    assert "truncatedSecret" not in f"{response.content.decode()} {caplog.text}"
    assert not WebhookEventTrigger.objects.exists()
    assert refresh(org).subscription_status == "active"
    assert stripe_stub.requested() == []


# --- hostile and faulty deliveries ----------------------------------------------------------------------------------


def _signed_event_text(webhook: Webhook, cus: dict, seat_price: dict, shape: str) -> str:
    """A body signed with the endpoint's real secret whose content is not an event Stripe could send."""
    event = sd.event("customer.subscription.updated", sd.subscription(cus, [(seat_price, 1)]))
    if shape == "null":
        return "null"
    if shape == "number":
        return "123"
    if shape == "data-null":
        event["data"] = None
    elif shape == "object-a-string":
        event["data"]["object"] = "sub_123"
    elif shape == "id-10000":
        event["id"] = "evt_" + "x" * 10_000
    elif shape == "api-version-500":
        event["api_version"] = "2" * 500
    elif shape == "not-an-event":
        event["object"] = "subscription"
    elif shape == "created-yesterday":
        event["created"] = "yesterday"
    elif shape == "nul-in-id":
        event["id"] = "evt_\x00abc"
    elif shape == "nul-in-customer":
        event["data"]["object"]["customer"] = "cus_\x00abc"
    elif shape == "nested-5000":
        text = sd.dumps(event)
        return text[:-1] + ',"deep":' + "[" * 5000 + "]" * 5000 + "}"
    return sd.dumps(event)


MALFORMED = [
    "null",
    "number",
    "data-null",
    "object-a-string",
    "id-10000",
    "api-version-500",
    "created-yesterday",
    "not-an-event",
    "nested-5000",
    "nul-in-id",
    "nul-in-customer",
]


@pytest.mark.parametrize("shape", MALFORMED)
def test_a_signed_but_malformed_event_is_refused_400_stores_nothing_and_is_logged_once(
    webhook, stripe_stub, plan, shape, caplog
):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=2)
    payload = _signed_event_text(webhook, cus, seat_price, shape)
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)

    with caplog.at_level(logging.DEBUG):
        response = client.post(
            webhook.path,
            data=payload,
            content_type="application/json",
            headers={"Stripe-Signature": sd.signature(payload, webhook.secret)},
        )

    assert response.status_code == 400, response.content
    assert response.content.decode().startswith("Refused: ")
    assert not WebhookEventTrigger.objects.exists()
    assert not Event.objects.exists()
    assert stripe_stub.requested() == []
    assert (refresh(org).subscription_status, org.max_seats) == ("active", 2)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is None
    assert "\x00" not in caplog.text and "x" * 300 not in caplog.text


def test_the_debug_secret_header_is_ignored(webhook, stripe_stub, plan, settings):
    """dj-stripe takes the secret from `X-Djstripe-Webhook-Secret` under DEBUG; here the stored secret alone counts."""
    settings.DEBUG = True
    org, canceled = _active_organization_whose_subscription_stripe_canceled(plan, stripe_stub)
    event = sd.event("customer.subscription.deleted", canceled)
    payload = sd.dumps(event)
    forged_secret = "whsec_chosenByTheSender0000000"

    forged = webhook.client.post(
        webhook.path,
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": sd.signature(payload, forged_secret), "X-Djstripe-Webhook-Secret": forged_secret},
    )
    assert forged.status_code == 400
    assert not WebhookEventTrigger.objects.exists()
    assert refresh(org).subscription_status == "active"

    genuine = webhook.client.post(
        webhook.path,
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": sd.signature(payload, webhook.secret), "X-Djstripe-Webhook-Secret": forged_secret},
    )
    assert genuine.status_code == 200
    assert refresh(org).subscription_status == "canceled"


def test_a_stripe_api_that_does_not_answer_in_time_gives_503_and_changes_nothing(
    webhook, stripe_stub, plan, settings, monkeypatch
):
    org, canceled = _active_organization_whose_subscription_stripe_canceled(plan, stripe_stub)
    settings.STRIPE_TIMEOUT_SECONDS = 0.5  # the window the held request waits out
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    monkeypatch.setattr(stripe, "default_http_client", stripe.default_http_client)  # restored after the test
    monkeypatch.setattr(stripe, "max_network_retries", stripe.max_network_retries)
    config.configure_client()

    with stripe_stub.holding(f"/v1/subscriptions/{canceled['id']}"):
        started = time.monotonic()
        response = webhook.deliver(sd.event("customer.subscription.deleted", canceled))
        took = time.monotonic() - started

    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert "Stripe will deliver it again" in response.content.decode()
    assert took < 5
    assert refresh(org).subscription_status == "active"
