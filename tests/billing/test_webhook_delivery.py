"""Stripe webhooks delivered twice, late, out of order, or at the same time as each other and as staff changes: the
organization ends in Stripe's current state, fetched last (the stub holds it; the event bodies may be stale)."""

from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from djstripe.models import Event, WebhookEventTrigger

from tests.factories import OrganizationFactory
from tests.support import stripe_data as sd
from tests.support.webhooks import history, refresh

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
