"""Fixtures of the plans tests: the bridge's real servers and the Stripe stub with signed webhooks."""

from tests.support.mcp import mcp_http  # noqa: F401 - fixtures
from tests.support.stripe import stripe_stub, webhook  # noqa: F401 - fixtures
