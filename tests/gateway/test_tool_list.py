"""The bridge's copy of the upstream's tool list: read again at once on notifications/tools/list_changed, and on a
timer (HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS) for upstreams that change without saying so."""

from __future__ import annotations

import time

import anyio
import pytest

from tests.factories import DeveloperFactory
from tests.support.mcp import http_client, run_uvicorn
from tests.support.upstreams import GATEWAY_BRIDGE_ENV, OLD_HOTCROSS, gateway_env

pytestmark = pytest.mark.django_db(transaction=True)


async def appears(client, name: str, within: float) -> float:
    started = time.monotonic()
    while name not in {tool.name for tool in (await client.list_tools()).tools}:
        assert time.monotonic() - started < within, f"{name} not listed after {within} s"
        await anyio.sleep(0.05)
    return time.monotonic() - started


def test_list_changed_refreshes_the_tool_list_at_once(gateway_bridge):
    developer = DeveloperFactory()
    # The session's bridge: old_hotcross over stdio, HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS=300.
    assert GATEWAY_BRIDGE_ENV["HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS"] == "300"

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            assert "fresh" not in {tool.name for tool in (await client.list_tools()).tools}
            await client.call_tool("grow", {"name": "fresh"})
            try:
                took = await appears(client, "fresh", within=5)
                return took, await client.call_tool("fresh", {})
            finally:  # the upstream is shared: it offers what it did before
                await client.call_tool("forget", {"name": "fresh"})

    took, result = anyio.run(scenario)
    assert took < 5  # long before the 300 s timer
    assert result.content[0].text == "I am new"


def test_the_timer_refreshes_a_list_that_changed_silently(tmp_path):
    developer = DeveloperFactory()
    # The shortest timer the setting allows (1 s): the new tool is listed within about a second.
    env = gateway_env(OLD_HOTCROSS, HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS="1")
    with run_uvicorn(tmp_path, **env) as bridge:

        async def scenario():
            async with http_client(bridge.url, developer.plain_key) as client:
                await client.call_tool("grow_quietly", {"name": "later"})
                await appears(client, "later", within=5)
                return await client.call_tool("later", {})

        result = anyio.run(scenario)
    assert result.content[0].text == "I am new"
