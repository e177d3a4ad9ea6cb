"""Fixtures of the MCP bridge tests; the helpers are in tests/support/mcp.py."""

from tests.support.mcp import db_proxy, mcp_http  # noqa: F401 - fixtures
