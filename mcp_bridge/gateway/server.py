"""The bridge's MCP server with an upstream behind it: the built-in tools first, then the upstream's.

Requests reach these methods through the same middlewares as the built-in tools (`mcp_bridge.server`): the caller's
key is checked (`CallerMiddleware`), names are checked (`RequestChecks`), and every forwarded `tools/call` of a tool
the upstream lists is metered through `mcp_bridge.metering.metered`, ok or not, with its duration. A forwarded call
whose upstream cannot start is metered as an error too (the bridge cannot tell which names it would have had).
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CallToolResult,
    GetPromptResult,
    ReadResourceRequestParams,
    ReadResourceResult,
)
from mcp_types import (
    Prompt as MCPPrompt,
)
from mcp_types import (
    Resource as MCPResource,
)
from mcp_types import (
    ResourceTemplate as MCPResourceTemplate,
)
from mcp_types import (
    Tool as MCPTool,
)

from mcp_bridge import metering
from mcp_bridge.auth import current_caller
from mcp_bridge.gateway import pool
from mcp_bridge.gateway.identity import caller_meta, forwarded_arguments, public_tool
from mcp_bridge.gateway.upstream import Upstream

logger = logging.getLogger(__name__)


class GatewayServer(MCPServer):
    """`MCPServer` whose lists and calls include the upstream's (see `mcp_bridge.gateway`)."""

    async def _upstream(self) -> Upstream | None:
        """The caller's upstream, started; None when it cannot be had (the built-ins keep working)."""
        found = pool.gateway()
        if found is None:
            return None
        upstream = await found.upstream_for(current_caller())
        try:
            await upstream.session()
        except MCPError as exc:
            logger.warning("listing without the upstream: %s", exc.message)
            return None
        return upstream

    # --- tools ----------------------------------------------------------------------------------------------------

    async def list_tools(self) -> list[MCPTool]:
        tools = await super().list_tools()
        upstream = await self._upstream()
        if upstream is None:
            return tools
        local = {tool.name for tool in tools}
        for tool in upstream.listing.tools.values():
            if tool.name in local:
                logger.error("upstream tool %r hidden: a built-in tool has that name (manage.py check)", tool.name)
                continue
            tools.append(public_tool(tool))
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if self._tool_manager.get_tool(name) is not None:
            return await super().call_tool(name, arguments, context)
        found = pool.gateway()
        if found is None:
            return await super().call_tool(name, arguments, context)  # the SDK's "Unknown tool"
        caller = current_caller()
        upstream = await found.upstream_for(caller)
        try:
            await upstream.session()
        except MCPError as exc:
            failure = exc

            async def refuse() -> Any:
                raise failure

            return await metering.metered(name, refuse)
        tool = upstream.listing.tools.get(name)
        if tool is None:
            return await super().call_tool(name, arguments, context)  # not a tool of either: not served, not metered
        arguments = forwarded_arguments(tool, arguments, caller)
        meta = caller_meta(caller)

        async def forward() -> CallToolResult:
            return await upstream.request(
                f"tools/call {name!r}", lambda session: session.call_tool(name, arguments, meta=meta)
            )

        return await metering.metered(name, forward)

    # --- prompts --------------------------------------------------------------------------------------------------

    async def list_prompts(self) -> list[MCPPrompt]:
        prompts = await super().list_prompts()
        upstream = await self._upstream()
        if upstream is not None:
            local = {prompt.name for prompt in prompts}
            prompts.extend(prompt for prompt in upstream.listing.prompts if prompt.name not in local)
        return prompts

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Any = None
    ) -> GetPromptResult | Any:
        if self._prompt_manager.get_prompt(name) is not None or pool.gateway() is None:
            return await super().get_prompt(name, arguments, context)
        caller = current_caller()
        upstream = await pool.gateway().upstream_for(caller)  # type: ignore[union-attr]
        meta = caller_meta(caller)
        return await upstream.request(
            f"prompts/get {name!r}", lambda session: session.get_prompt(name, arguments, meta=meta)
        )

    # --- resources ------------------------------------------------------------------------------------------------

    async def list_resources(self) -> list[MCPResource]:
        resources = await super().list_resources()
        upstream = await self._upstream()
        if upstream is not None:
            resources.extend(upstream.listing.resources)
        return resources

    async def list_resource_templates(self) -> list[MCPResourceTemplate]:
        templates = await super().list_resource_templates()
        upstream = await self._upstream()
        if upstream is not None:
            templates.extend(upstream.listing.templates)
        return templates

    async def _handle_read_resource(
        self, ctx: ServerRequestContext[Any], params: ReadResourceRequestParams
    ) -> ReadResourceResult | Any:
        found = pool.gateway()
        if found is None or self._resource_manager.list_resources():
            return await super()._handle_read_resource(ctx, params)
        caller = current_caller()
        upstream = await found.upstream_for(caller)
        uri, meta = str(params.uri), caller_meta(caller)
        return await upstream.request(f"resources/read {uri!r}", lambda session: session.read_resource(uri, meta=meta))
