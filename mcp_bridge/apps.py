from django.apps import AppConfig


class McpBridgeConfig(AppConfig):
    name = "mcp_bridge"
    verbose_name = "MCP bridge"

    def ready(self) -> None:
        # Registers the system checks of HOTCROSS_MCP_TOOLS and the bridge's database threads.
        from mcp_bridge import checks  # noqa: F401
