"""The Hotcross MCP server: one `MCPServer` (mcp SDK 2.x) with the built-in tools and those of `HOTCROSS_MCP_TOOLS`.

Every request passes two middlewares, outermost first: `CallerMiddleware` (who is calling; over stdio it re-checks
the key) and `MeteringMiddleware` (one usage event per served `tools/call`). Tools get the caller through their
`_developer_id` / `_organization_id` parameters (see `mcp_bridge.tools`).

Transports: `manage.py mcp_server` (stdio) and `mcp_bridge.http` (streamable HTTP at /mcp in `hotcross.asgi`).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from mcp.server.mcpserver import MCPServer

from mcp_bridge.auth import CallerMiddleware, current_caller
from mcp_bridge.metering import MeteringMiddleware
from mcp_bridge.tools import bind_caller, duplicate_names, options_of, tool_name, tools_of

SERVER_NAME = "hotcross"
BUILTIN_TOOL_MODULES = ("mcp_bridge.tools.builtin",)
INSTRUCTIONS = (
    "Hotcross tools for the developer whose API key this server was given. "
    "`whoami` tells who that is; `usage` shows this month's tool calls."
)


def tool_modules() -> list[str]:
    """The built-in tool module and those named by `HOTCROSS_MCP_TOOLS`, without repeats."""
    return list(dict.fromkeys([*BUILTIN_TOOL_MODULES, *settings.HOTCROSS_MCP_TOOLS]))


def build_server(
    *, stdio_key: str | None = None, modules: Sequence[str] | None = None, bridged: bool = True
) -> MCPServer:
    """The MCP server with its tools.

    `stdio_key`: the key to re-check on every request (stdio); without it, the HTTP layer authenticates requests.
    `modules`: tool modules (default: `tool_modules()`).
    `bridged=False` builds the same server with no caller, no auth and no metering, and registers the tools as they
    are (they must not take caller parameters); the overhead benchmark compares against it.
    """
    functions = tools_of(tool_modules() if modules is None else modules)
    duplicates = duplicate_names(functions)
    if duplicates:
        raise ImproperlyConfigured(f"HOTCROSS_MCP_TOOLS: more than one tool is named {', '.join(duplicates)}.")
    middleware = []
    if bridged:
        middleware = [
            CallerMiddleware(stdio_key=stdio_key),
            MeteringMiddleware(tool_name(fn) for fn in functions),
        ]
    server = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, middleware=middleware)
    for fn in functions:
        options = options_of(fn)
        server.add_tool(
            bind_caller(fn, current_caller) if bridged else fn,
            name=tool_name(fn),
            title=options.title,
            description=options.description,
            annotations=options.annotations,
        )
    return server
