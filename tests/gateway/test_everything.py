"""The MCP reference server (`@modelcontextprotocol/server-everything`) behind the bridge, over stdio and over
streamable HTTP, through /mcp and through `manage.py mcp_server`, with the mcp SDK's client."""

from __future__ import annotations

import anyio
import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.support.mcp import http_client, run_uvicorn, stdio_session, structured, usage_written
from tests.support.upstreams import EVERYTHING, gateway_env, needs_everything

pytestmark = [pytest.mark.django_db(transaction=True), needs_everything]


async def exercise(client) -> dict:
    """Everything a client does with the reference server through the bridge."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    echo = await client.call_tool("echo", {"message": "hello upstream"})
    total = await client.call_tool("get-sum", {"a": 2, "b": 40})
    prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
    prompt = await client.get_prompt("args-prompt", {"city": "Lyon"})
    resources = (await client.list_resources()).resources
    uri = next(str(r.uri) for r in resources if str(r.uri).startswith("demo://resource/static/document/"))
    read = await client.read_resource(uri)
    whoami = structured(await client.call_tool("whoami", {}))
    usage = structured(await client.call_tool("usage", {}))
    return {
        "tools": tools,
        "echo": echo,
        "total": total,
        "prompts": prompts,
        "prompt": prompt,
        "read": read,
        "whoami": whoami,
        "usage": usage,
    }


def check(seen: dict, developer) -> None:
    assert {"whoami", "usage", "echo", "get-sum", "get-env"} <= set(seen["tools"])
    assert set(seen["tools"]["get-sum"].input_schema["properties"]) == {"a", "b"}
    assert not seen["echo"].is_error
    assert seen["echo"].content[0].text == "Echo: hello upstream"
    assert "42" in seen["total"].content[0].text
    assert {"simple-prompt", "args-prompt"} <= seen["prompts"]
    assert "Lyon" in seen["prompt"].messages[0].content.text
    assert seen["read"].contents and seen["read"].contents[0].text
    assert seen["whoami"]["developer_id"] == str(developer.id)
    # The forwarded calls are counted like built-in ones (usage's own call is recorded once answered).
    assert seen["usage"]["by_tool"] == {"echo": 1, "get-sum": 1, "whoami": 1}


def test_stdio_upstream_through_http_bridge(tmp_path):
    developer = DeveloperFactory()
    with run_uvicorn(tmp_path, **gateway_env(EVERYTHING)) as bridge:

        async def scenario():
            async with http_client(bridge.url, developer.plain_key) as client:
                return await exercise(client)

        seen = anyio.run(scenario)
    check(seen, developer)
    usage_written(4)
    events = UsageEvent.objects.filter(developer=developer)
    assert sorted(events.values_list("tool_name", flat=True)) == ["echo", "get-sum", "usage", "whoami"]
    assert all(events.values_list("ok", flat=True))


def test_stdio_upstream_through_stdio_bridge(tmp_path):
    developer = DeveloperFactory()

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, **gateway_env(EVERYTHING)) as client:
                return await exercise(client)

    check(anyio.run(scenario), developer)


def test_http_upstream_through_both_bridges(tmp_path, everything_upstream):
    developer = DeveloperFactory()
    upstream_url = everything_upstream  # the session's: a session of its own for each bridge
    with run_uvicorn(tmp_path, **gateway_env(upstream_url)) as bridge:

        async def over_http():
            async with http_client(bridge.url, developer.plain_key) as client:
                return await exercise(client)

        check(anyio.run(over_http), developer)

    async def over_stdio():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, **gateway_env(upstream_url)) as client:
                return await exercise(client)

    seen = anyio.run(over_stdio)
    assert seen["usage"]["by_tool"] == {"echo": 2, "get-sum": 2, "whoami": 2, "usage": 1}
