"""What an upstream offers (`Listing`: its tools, prompts, resources and resource templates), read through the
mcp SDK's `ClientSession`, every page of each list."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mcp.client.session import ClientSession
from mcp_types import PaginatedRequestParams, Prompt, Resource, ResourceTemplate, Tool

MAX_PAGES = 100  # of a paginated list


@dataclass
class Listing:
    """What the upstream offers, as it last said."""

    tools: dict[str, Tool] = field(default_factory=dict)
    prompts: list[Prompt] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    templates: list[ResourceTemplate] = field(default_factory=list)
    read_at: float = 0.0


async def read_listing(session: ClientSession) -> Listing:
    """The lists the initialized `session`'s server has (as its capabilities say)."""
    capabilities = session.server_capabilities
    listing = Listing(read_at=time.monotonic())
    tools = await _all_pages(session.list_tools, "tools") if capabilities and capabilities.tools else []
    listing.tools = {tool.name: tool for tool in tools}
    if capabilities and capabilities.prompts:
        listing.prompts = await _all_pages(session.list_prompts, "prompts")
    if capabilities and capabilities.resources:
        listing.resources = await _all_pages(session.list_resources, "resources")
        listing.templates = await _all_pages(session.list_resource_templates, "resource_templates")
    return listing


async def _all_pages(fetch: Callable[..., Awaitable[Any]], attribute: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        result = await fetch(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        items.extend(getattr(result, attribute))
        cursor = result.next_cursor
        if not cursor:
            break
    return items
