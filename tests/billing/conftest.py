"""Fixtures of the Stripe tests (tests/support/stripe.py): no network but 127.0.0.1, a local Stripe API stub, signed
webhook deliveries."""

from tests.support.stripe import _only_loopback, stripe_stub, webhook  # noqa: F401 - fixtures
