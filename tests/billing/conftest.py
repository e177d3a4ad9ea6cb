"""The Stripe tests reach no network but 127.0.0.1 (tests/support/stripe.py)."""

from tests.support.stripe import _only_loopback  # noqa: F401 - an autouse fixture, for this folder
