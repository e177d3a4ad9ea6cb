"""Stripe webhooks through dj-stripe's real view: signed payloads in, organizations in Stripe's current state out.

The stub holds Stripe's current state; the event bodies are what Stripe sent at the time (possibly stale).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from io import StringIO

import pytest
import stripe
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from djstripe.models import Event, WebhookEndpoint, WebhookEventTrigger
from djstripe.models import Subscription as StripeSubscription

from accounts import services
from accounts.authentication import authenticate_key
from accounts.billing import config
from accounts.exceptions import KeyRefused, SeatLimitReached
from accounts.models import Organization, PricingModel
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support import stripe_data as sd
from tests.support.stripe import Webhook


@pytest.fixture
def plan(stripe_stub):
    """A product with a per-seat price (no Hotcross metadata), and a customer Stripe knows."""
    prod = sd.product()
    seat_price = sd.price(prod)
    cus = sd.customer()
    stripe_stub.put(prod, seat_price, cus)
    return prod, seat_price, cus


def history(org: Organization) -> list[str]:
    ct = ContentType.objects.get_for_model(Organization)
    return list(
        LogEntry.objects.filter(content_type=ct, object_id=str(org.pk))
        .order_by("pk")
        .values_list("change_message", flat=True)
    )


def refresh(org: Organization) -> Organization:
    org.refresh_from_db()
    return org


def developers(org: Organization, n: int) -> list:
    """n seat holders, claimed one after the other (the first keeps access longest)."""
    start = timezone.now() - datetime.timedelta(hours=1)
    return [DeveloperFactory(organization=org, seat_claimed_at=start + datetime.timedelta(seconds=i)) for i in range(n)]


def refusal(key: str) -> str | None:
    try:
        authenticate_key(key)
    except KeyRefused as exc:
        return exc.code
    return None


# --- status ---------------------------------------------------------------------------------------------------------


def test_trialing_active_past_due_canceled(webhook, stripe_stub, plan):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="incomplete", max_seats=1)
    sub = sd.subscription(cus, [(seat_price, 3)], status="trialing")

    steps = [
        ("customer.subscription.created", "trialing"),
        ("customer.subscription.updated", "active"),
        ("customer.subscription.updated", "past_due"),
        ("customer.subscription.deleted", "canceled"),
    ]
    for event_type, status in steps:
        current = sd.with_status(sub, status)
        stripe_stub.put(current)
        response = webhook.deliver(sd.event(event_type, current))
        assert response.status_code == 200
        org = refresh(org)
        assert (org.subscription_status, org.subscription_id, org.max_seats) == (status, sub["id"], 3)

    messages = history(org)
    assert [m for m in messages if m.startswith("Subscription status")] == [
        f"Subscription status: incomplete → trialing. Subscription: — → {sub['id']}.",
        "Subscription status: trialing → active.",
        "Subscription status: active → past_due.",
        "Subscription status: past_due → canceled.",
    ]
    assert "Seats: 1 → 3." in messages
    # Every write came from Stripe, recorded against the system user.
    assert set(LogEntry.objects.filter(change_message__in=messages).values_list("user__username", flat=True)) == {
        "hotcross-system"
    }


def test_a_key_works_before_a_cancellation_and_not_after(webhook, stripe_stub, plan):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="incomplete", max_seats=1)
    dev = DeveloperFactory(organization=org)
    sub = sd.subscription(cus, [(seat_price, 1)], status="active")
    stripe_stub.put(sub)
    assert webhook.deliver(sd.event("customer.subscription.created", sub)).status_code == 200

    principal = authenticate_key(dev.plain_key)
    assert principal.developer_id == dev.pk
    assert principal.subscription_status == "active"

    canceled = sd.with_status(sub, "canceled")
    stripe_stub.put(canceled)
    assert webhook.deliver(sd.event("customer.subscription.deleted", canceled)).status_code == 200

    with pytest.raises(KeyRefused) as refused:
        authenticate_key(dev.plain_key)
    assert refused.value.code == "subscription_inactive"
    assert "canceled" in refused.value.message


def test_paused_subscription_refuses_keys(webhook, stripe_stub, plan):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=1)
    dev = DeveloperFactory(organization=org)
    paused = sd.subscription(cus, [(seat_price, 1)], status="paused")
    stripe_stub.put(paused)
    assert webhook.deliver(sd.event("customer.subscription.paused", paused)).status_code == 200
    assert refresh(org).subscription_status == "paused"
    assert refusal(dev.plain_key) == "subscription_inactive"


# --- seats ----------------------------------------------------------------------------------------------------------


def test_quantity_down_refuses_the_newest_seat_holders_and_up_restores_them(webhook, stripe_stub, plan):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=3)
    first, second, third = developers(org, 3)
    sub = sd.subscription(cus, [(seat_price, 3)])

    down = sd.with_quantities(sub, 2)
    stripe_stub.put(down)
    assert webhook.deliver(sd.event("customer.subscription.updated", down)).status_code == 200
    assert refresh(org).max_seats == 2
    assert [refusal(d.plain_key) for d in (first, second, third)] == [None, None, "seat_limit_exceeded"]
    with pytest.raises(SeatLimitReached):
        services.add_developer(organization=org, email="late@example.com")
    assert "3 in use: the newest seat holder is refused." in history(org)[-1]

    up = sd.with_quantities(sub, 5)
    stripe_stub.put(up)
    assert webhook.deliver(sd.event("customer.subscription.updated", up)).status_code == 200
    assert refresh(org).max_seats == 5
    assert [refusal(d.plain_key) for d in (first, second, third)] == [None, None, None]
    services.add_developer(organization=org, email="late@example.com")  # a free seat again


@pytest.mark.parametrize(
    ("prices", "seats", "pricing_model"),
    [
        pytest.param([({}, 7)], 7, PricingModel.PER_ORGANIZATION, id="no-metadata-is-per-seat"),
        pytest.param([({"hotcross_pricing": "per_seat"}, 4)], 4, PricingModel.PER_ORGANIZATION, id="per-seat"),
        pytest.param(
            [({"hotcross_pricing": "flat", "hotcross_seats": "10"}, 1)], 10, PricingModel.PER_ORGANIZATION, id="flat"
        ),
        pytest.param(
            [({"hotcross_pricing": "flat", "hotcross_seats": "10"}, 2)], 20, PricingModel.PER_ORGANIZATION, id="flat-x2"
        ),
        pytest.param(
            [({"hotcross_pricing": "base"}, 1), ({"hotcross_pricing": "per_seat"}, 6)],
            6,
            PricingModel.HYBRID,
            id="hybrid",
        ),
        pytest.param([({"hotcross_pricing": "per_developer"}, 1)], 1, PricingModel.PER_DEVELOPER, id="per-developer"),
        pytest.param([({"hotcross_seats": "10"}, 3)], 30, PricingModel.PER_ORGANIZATION, id="seat-count-alone-is-flat"),
        pytest.param(
            [
                ({"hotcross_pricing": "base"}, 1),
                ({"hotcross_pricing": "per_seat"}, 6),
                ({"hotcross_pricing": "base"}, None),
            ],
            6,
            PricingModel.HYBRID,
            id="hybrid-with-a-metered-usage-price",
        ),
    ],
)
def test_seats_by_pricing_model(webhook, stripe_stub, plan, prices, seats, pricing_model):
    prod, _, cus = plan
    items = []
    for metadata, quantity in prices:
        price = sd.price(prod, metadata, usage_type="licensed" if quantity is not None else "metered")
        stripe_stub.put(price)
        items.append((price, quantity))
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="incomplete", max_seats=5)
    sub = sd.subscription(cus, items)
    stripe_stub.put(sub)

    assert webhook.deliver(sd.event("customer.subscription.created", sub)).status_code == 200

    org = refresh(org)
    assert (org.subscription_status, org.max_seats, org.pricing_model) == ("active", seats, pricing_model)


def test_bad_price_metadata_applies_the_status_and_keeps_the_seats(webhook, stripe_stub, plan, caplog):
    prod, _, cus = plan
    typo = sd.price(prod, {"hotcross_pricing": "per-seat"})
    stripe_stub.put(typo)
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="trialing", max_seats=4)
    sub = sd.subscription(cus, [(typo, 9)], status="active")
    stripe_stub.put(sub)

    with caplog.at_level(logging.ERROR, logger="accounts.billing"):
        assert webhook.deliver(sd.event("customer.subscription.updated", sub)).status_code == 200

    org = refresh(org)
    assert (org.subscription_status, org.max_seats) == ("active", 4)
    assert f"Price {typo['id']} has hotcross_pricing='per-seat'" in caplog.text


def test_more_seats_than_an_organization_holds_are_logged_and_answered_200(webhook, stripe_stub, plan, caplog):
    """A typo in a flat price's seat count must not make every delivery fail (the database would refuse it)."""
    prod, _, cus = plan
    huge = sd.price(prod, {"hotcross_pricing": "flat", "hotcross_seats": "1000000"})
    stripe_stub.put(huge)
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="trialing", max_seats=4)
    sub = sd.subscription(cus, [(huge, 5000)], status="active")
    stripe_stub.put(sub)

    with caplog.at_level(logging.ERROR, logger="accounts.billing"):
        assert webhook.deliver(sd.event("customer.subscription.updated", sub)).status_code == 200

    assert (refresh(org).subscription_status, org.max_seats) == ("active", 4)
    assert "adds up to 5000000000 seats" in caplog.text


def test_an_organization_whose_own_data_fails_validation_still_gets_stripe_s_state(webhook, stripe_stub, plan):
    """Data of ours that fails validation (a converted organization without a name) must neither turn into a 500 that
    Stripe retries for days nor keep Stripe's facts out: status, seats and pricing model are written as they are."""
    prod, _, cus = plan
    solo = sd.price(prod, {"hotcross_pricing": "per_developer"})
    stripe_stub.put(solo)
    org = OrganizationFactory(name="", stripe_customer_id=cus["id"], subscription_status="incomplete", max_seats=3)
    sub = sd.subscription(cus, [(solo, 1)], status="active")
    stripe_stub.put(sub)

    assert webhook.deliver(sd.event("customer.subscription.created", sub)).status_code == 200

    org = refresh(org)
    assert (org.subscription_status, org.subscription_id, org.max_seats) == ("active", sub["id"], 1)
    assert org.pricing_model == PricingModel.PER_DEVELOPER
    assert history(org)[-1] == "Changed pricing model."


# --- delivery: twice, late, out of order -----------------------------------------------------------------------------


def test_the_same_event_ten_times_has_one_effect(webhook, stripe_stub, plan):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="trialing", max_seats=1)
    sub = sd.subscription(cus, [(seat_price, 4)], status="active")
    stripe_stub.put(sub)
    event = sd.event("customer.subscription.updated", sub)
    before = len(history(org))

    responses = [webhook.deliver(event) for _ in range(10)]

    assert [r.status_code for r in responses] == [200] * 10
    org = refresh(org)
    assert (org.subscription_status, org.max_seats) == ("active", 4)
    assert len(history(org)) == before + 2  # one status change, one seat change
    assert Event.objects.filter(id=event["id"]).count() == 1
    assert WebhookEventTrigger.objects.filter(valid=True).count() == 10
    assert stripe_stub.requested(f"/v1/subscriptions/{sub['id']}") == [f"/v1/subscriptions/{sub['id']}"]


def test_an_older_event_after_a_newer_one_leaves_the_current_state(webhook, stripe_stub, plan):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="incomplete", max_seats=1)
    trial = sd.subscription(cus, [(seat_price, 2)], status="trialing")
    current = sd.with_quantities(sd.with_status(trial, "active"), 5)
    older = sd.event("customer.subscription.created", trial, created=sd.NOW - 60)
    newer = sd.event("customer.subscription.updated", current, created=sd.NOW)
    stripe_stub.put(current)

    assert webhook.deliver(newer).status_code == 200
    assert webhook.deliver(older).status_code == 200  # late: its body says trialing with 2 seats

    org = refresh(org)
    assert (org.subscription_status, org.max_seats) == ("active", 5)


def test_a_late_event_does_not_revive_a_canceled_subscription(webhook, stripe_stub, plan):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=2)
    sub = sd.subscription(cus, [(seat_price, 2)], status="active")
    canceled = sd.with_status(sub, "canceled")
    stripe_stub.put(canceled)

    assert webhook.deliver(sd.event("customer.subscription.deleted", canceled)).status_code == 200
    assert webhook.deliver(sd.event("customer.subscription.updated", sub, created=sd.NOW - 3600)).status_code == 200

    assert refresh(org).subscription_status == "canceled"


def test_the_subscription_in_best_standing_decides(webhook, stripe_stub, plan):
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="incomplete", max_seats=1)
    active = sd.subscription(cus, [(seat_price, 3)], status="active", created=sd.NOW - 86_400 * 10)
    newer_canceled = sd.subscription(cus, [(seat_price, 9)], status="canceled", created=sd.NOW)
    stripe_stub.put(active, newer_canceled)

    assert webhook.deliver(sd.event("customer.subscription.created", active)).status_code == 200
    assert webhook.deliver(sd.event("customer.subscription.deleted", newer_canceled)).status_code == 200

    org = refresh(org)
    assert (org.subscription_status, org.subscription_id, org.max_seats) == ("active", active["id"], 3)

    # The old one lapses and a new one starts: the new one decides, whatever the order of their events.
    renewed = sd.with_status(newer_canceled, "trialing", canceled_at=None, ended_at=None)
    lapsed = sd.with_status(active, "unpaid")
    stripe_stub.put(renewed, lapsed)
    assert webhook.deliver(sd.event("customer.subscription.updated", renewed)).status_code == 200
    assert webhook.deliver(sd.event("customer.subscription.updated", lapsed)).status_code == 200

    org = refresh(org)
    assert (org.subscription_status, org.subscription_id, org.max_seats) == ("trialing", renewed["id"], 9)


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


# --- concurrency ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_end_in_the_state_fetched_last(webhook, stripe_stub, plan):
    """Two deliveries for one customer: the first reads Stripe's state, then stalls before writing; meanwhile the
    state changes and a second delivery arrives. The organization must end in the newer state."""
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=1)
    sub = sd.subscription(cus, [(seat_price, 1)])
    stripe_stub.put(sub)
    assert webhook.deliver(sd.event("customer.subscription.created", sub)).status_code == 200  # account, customer

    statuses: dict[str, int] = {}

    def deliver(name: str, event: dict) -> None:
        try:
            statuses[name] = webhook.deliver(event).status_code
        finally:
            connection.close()

    two, four = sd.with_quantities(sub, 2), sd.with_quantities(sub, 4)
    stripe_stub.put(two)
    with stripe_stub.holding(f"/v1/subscriptions/{sub['id']}") as hold:
        first = threading.Thread(target=deliver, args=("first", sd.event("customer.subscription.updated", two)))
        first.start()
        assert hold.arrived.wait(timeout=20), "the first delivery never fetched the subscription"
        stripe_stub.put(four)
        second = threading.Thread(target=deliver, args=("second", sd.event("customer.subscription.updated", four)))
        second.start()
        second.join(timeout=1.5)  # without the organization lock it would finish here, before the first
        hold.release()
        first.join(timeout=30)
        second.join(timeout=30)

    assert statuses == {"first": 200, "second": 200}
    assert refresh(org).max_seats == 4


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


@pytest.mark.postgres_only  # SQLite has one writer for the whole database: the delivery's transaction holds it
@pytest.mark.django_db(transaction=True)
def test_a_slow_stripe_does_not_hold_the_organization(webhook, stripe_stub, plan):
    """While a delivery waits for Stripe, staff can still change the organization's seats at once."""
    _, seat_price, cus = plan
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=1)
    sub = sd.subscription(cus, [(seat_price, 3)])
    stripe_stub.put(sub)
    statuses: list[int] = []

    def deliver() -> None:
        try:
            statuses.append(webhook.deliver(sd.event("customer.subscription.updated", sub)).status_code)
        finally:
            connection.close()

    with stripe_stub.holding(f"/v1/subscriptions/{sub['id']}") as hold:
        thread = threading.Thread(target=deliver)
        thread.start()
        assert hold.arrived.wait(timeout=20), "the delivery never fetched the subscription"
        started = time.monotonic()
        out = StringIO()
        call_command("orgs", "update-seats", str(org.pk), "7", stdout=out, stderr=StringIO())
        waited = time.monotonic() - started
        assert refresh(org).max_seats == 7
        hold.release()
        thread.join(timeout=30)

    assert waited < 2, f"update-seats waited {waited:.1f} s behind a delivery waiting for Stripe"
    assert statuses == [200]
    assert refresh(org).max_seats == 3  # Stripe's state, fetched after the staff change, applied last


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
