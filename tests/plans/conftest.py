"""Fixtures of the plans tests: the bridge's real servers and the Stripe stub with signed webhooks."""

from tests.billing.conftest import stripe_stub, webhook  # noqa: F401
from tests.mcp_bridge.conftest import mcp_http  # noqa: F401
