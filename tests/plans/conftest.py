"""The bridge's real-server fixtures for the plans tests."""

from tests.mcp_bridge.conftest import mcp_http  # noqa: F401
