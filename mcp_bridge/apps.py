from typing import Any

from django.apps import AppConfig


class McpBridgeConfig(AppConfig):
    name = "mcp_bridge"
    verbose_name = "MCP bridge"

    def ready(self) -> None:
        # Registers the system checks of HOTCROSS_MCP_TOOLS and the bridge's database threads.
        from infra import health
        from mcp_bridge import checks  # noqa: F401

        health.register("upstream", _upstream_health)


def _upstream_health() -> dict[str, Any] | None:
    """/healthz's `upstream` in gateway mode (the gateway's modules are imported on the first call, not at start)."""
    from mcp_bridge.gateway.upstream import health

    return health()
