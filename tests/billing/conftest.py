"""The Stripe tests reach no network but 127.0.0.1 (tests/support/stripe.py); the webhook tests' Stripe plan."""

import pytest

from tests.support import stripe_data as sd
from tests.support.stripe import _only_loopback  # noqa: F401 - an autouse fixture, for this folder


@pytest.fixture
def plan(stripe_stub):
    """A product with a per-seat price (no Hotcross metadata), and a customer Stripe knows."""
    prod = sd.product()
    seat_price = sd.price(prod)
    cus = sd.customer()
    stripe_stub.put(prod, seat_price, cus)
    return prod, seat_price, cus
