"""Seats and pricing model from a subscription's items and their prices' metadata; which subscription decides."""

from __future__ import annotations

import datetime

import pytest
from djstripe.models import Price, Product, Subscription

from accounts.billing.prices import PriceMetadataError, SeatPlan, seat_plan
from accounts.billing.sync import best_standing
from accounts.models import PricingModel


def item(metadata: dict | None = None, quantity: int | str | None = 1, price_id: str = "price_1") -> dict:
    data = {"object": "subscription_item", "price": {"id": price_id, "object": "price", "metadata": metadata or {}}}
    if quantity is not None:
        data["quantity"] = quantity
    return data


def metered(metadata: dict | None = None, price_id: str = "price_metered") -> dict:
    """An item of a usage-based price: Stripe gives it no quantity."""
    data = item(metadata, None, price_id)
    data["price"]["recurring"] = {"interval": "month", "usage_type": "metered"}
    data["quantity"] = None
    return data


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([item({}, 3)], SeatPlan(3, PricingModel.PER_ORGANIZATION)),
        ([item({"hotcross_pricing": " Per_Seat "}, 2)], SeatPlan(2, PricingModel.PER_ORGANIZATION)),
        ([item({"hotcross_pricing": "per_seat"}, 0)], SeatPlan(0, PricingModel.PER_ORGANIZATION)),
        ([item({}, None)], SeatPlan(1, PricingModel.PER_ORGANIZATION)),  # Stripe's default quantity
        ([item({"hotcross_pricing": "flat", "hotcross_seats": "25"}, 1)], SeatPlan(25, PricingModel.PER_ORGANIZATION)),
        ([item({"hotcross_pricing": "flat", "hotcross_seats": "5"}, 3)], SeatPlan(15, PricingModel.PER_ORGANIZATION)),
        (
            [item({"hotcross_pricing": "base"}, 1), item({"hotcross_pricing": "per_seat"}, 8)],
            SeatPlan(8, PricingModel.HYBRID),
        ),
        ([item({"hotcross_pricing": "base"}, 1), item({}, 8)], SeatPlan(8, PricingModel.HYBRID)),
        ([item({"hotcross_pricing": "per_developer"}, 3)], SeatPlan(1, PricingModel.PER_DEVELOPER)),
        (
            [item({"hotcross_pricing": "per_developer"}, 1), item({"hotcross_pricing": "base"}, 1)],
            SeatPlan(1, PricingModel.PER_DEVELOPER),
        ),
        ([item({}, 2), item({}, 3)], SeatPlan(5, PricingModel.PER_ORGANIZATION)),  # two seat prices add up
        # A seat count without a pricing key is a flat price, not a per-seat one that ignores the count.
        ([item({"hotcross_seats": "10"}, 2)], SeatPlan(20, PricingModel.PER_ORGANIZATION)),
        # A usage-based add-on marked base counts no seats, although it has no quantity.
        (
            [
                item({"hotcross_pricing": "base"}, 1, "price_base"),
                item({"hotcross_pricing": "per_seat"}, 6, "price_seat"),
                metered({"hotcross_pricing": "base"}),
            ],
            SeatPlan(6, PricingModel.HYBRID),
        ),
        ([item({"hotcross_pricing": "flat", "hotcross_seats": " 7 "}, 1)], SeatPlan(7, PricingModel.PER_ORGANIZATION)),
        ([item({}, 2**31 - 1)], SeatPlan(2**31 - 1, PricingModel.PER_ORGANIZATION)),
    ],
)
def test_seat_plan(items, expected):
    assert seat_plan(items) == expected


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "no items"),
        ([item({"hotcross_pricing": "per-seat"}, 1, "price_typo")], "Price price_typo has hotcross_pricing='per-seat'"),
        (
            [item({"hotcross_pricing": "flat"}, 1, "price_flat")],
            "hotcross_seats of the flat price price_flat is missing",
        ),
        ([item({"hotcross_pricing": "flat", "hotcross_seats": "ten"}, 1)], "must be a whole number, not 'ten'"),
        ([item({"hotcross_pricing": "flat", "hotcross_seats": "-2"}, 1)], "must be 0 or more, not -2"),
        ([item({}, -1)], "must be 0 or more"),
        (
            [item({"hotcross_pricing": "per_developer"}, 1), item({}, 4)],
            "mixes a per_developer price with seat prices",
        ),
        (
            [item({"hotcross_pricing": "per_seat", "hotcross_seats": "10"}, 1, "price_both")],
            "Price price_both has hotcross_pricing=per_seat and hotcross_seats='10'; a seat count belongs only on a "
            "flat price",
        ),
        (
            [item({"hotcross_pricing": "base", "hotcross_seats": "3"}, 1, "price_base")],
            "a seat count belongs only on a flat price",
        ),
        ([metered(price_id="price_usage")], "Price price_usage is metered"),
        ([item({"hotcross_pricing": "flat", "hotcross_seats": "1_000"}, 1)], "must be a whole number, not '1_000'"),
        ([item({"hotcross_pricing": "flat", "hotcross_seats": "2.5"}, 1)], "must be a whole number, not '2.5'"),
        # More seats than an organization can hold: refused here, not by the database in the middle of a webhook.
        (
            [item({"hotcross_pricing": "flat", "hotcross_seats": "1000000"}, 5000)],
            "adds up to 5000000000 seats, more than the 2147483647 possible",
        ),
    ],
)
def test_seat_plan_refuses_unreadable_metadata(items, message):
    with pytest.raises(PriceMetadataError) as refused:
        seat_plan(items)
    assert message in refused.value.message


@pytest.mark.django_db
def test_an_unexpanded_price_is_read_from_the_synced_copy():
    product = Product.objects.create(id="prod_local", name="Hotcross API", stripe_data={})
    Price.objects.create(
        id="price_local",
        product=product,
        currency="usd",
        active=True,
        metadata={"hotcross_pricing": "flat", "hotcross_seats": "12"},
        stripe_data={},
    )
    assert seat_plan([{"price": "price_local", "quantity": 1}]) == SeatPlan(12, PricingModel.PER_ORGANIZATION)
    assert seat_plan([{"price": "price_unknown", "quantity": 2}]) == SeatPlan(2, PricingModel.PER_ORGANIZATION)


def _sub(sub_id: str, status: str, days_ago: int) -> Subscription:
    created = datetime.datetime(2026, 1, 31, tzinfo=datetime.UTC) - datetime.timedelta(days=days_ago)
    return Subscription(id=sub_id, stripe_data={"status": status}, created=created)


def test_best_standing_follows_the_status_order_then_the_newest():
    subs = [
        _sub("sub_canceled_new", "canceled", 0),
        _sub("sub_past_due", "past_due", 5),
        _sub("sub_trialing", "trialing", 3),
        _sub("sub_unknown", "some_future_status", 1),
    ]
    assert best_standing(subs).id == "sub_trialing"
    assert best_standing([*subs, _sub("sub_active_old", "active", 400)]).id == "sub_active_old"
    assert best_standing([_sub("sub_a", "active", 9), _sub("sub_b", "active", 2)]).id == "sub_b"
    assert best_standing([_sub("sub_unknown", "some_future_status", 1), subs[0]]).id == "sub_canceled_new"
    assert best_standing([]) is None
