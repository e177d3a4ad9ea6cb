"""Stripe webhooks through dj-stripe's real view: signed payloads in, organizations in Stripe's current state out
(status, seats).

The stub holds Stripe's current state; the event bodies are what Stripe sent at the time (possibly stale). Deliveries
twice, late, out of order or at once: `test_webhook_delivery.py`; refused and faulty ones: `test_webhook_refusals.py`.
"""

from __future__ import annotations

import logging

import pytest
from django.contrib.admin.models import LogEntry

from accounts import services
from accounts.authentication import authenticate_key
from accounts.exceptions import KeyRefused, SeatLimitReached
from accounts.models import PricingModel
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support import stripe_data as sd
from tests.support.webhooks import developers, history, refresh, refusal

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
