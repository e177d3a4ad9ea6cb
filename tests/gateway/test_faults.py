"""Upstreams that fail: one that exits at once, one that crashes mid-call, one that sleeps past the timeout. Each
gives the client a clear JSON-RPC error in bounded time, is metered as an error, leaves the built-in tools working,
and a crashed upstream is restarted; /healthz says so and stays 200."""

from __future__ import annotations

import shlex
import sys
import time

import anyio
import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.support.mcp import http_client, mcp_error, run_uvicorn, stdio_session, structured, usage_written
from tests.support.upstreams import OLD_HOTCROSS, gateway_env, healthz

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM_UNAVAILABLE = -32010
UPSTREAM_TIMEOUT = -32011


async def refused(client, tool: str, arguments: dict | None = None) -> tuple[object, float]:
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        await client.call_tool(tool, arguments or {})
    return mcp_error(caught.value), time.monotonic() - started


def test_an_upstream_that_exits_at_once(tmp_path):
    developer = DeveloperFactory()
    with run_uvicorn(tmp_path, **gateway_env(f"{OLD_HOTCROSS} exit")) as bridge:

        async def scenario():
            async with http_client(bridge.url, developer.plain_key) as client:
                tools = {tool.name for tool in (await client.list_tools()).tools}
                error, took = await refused(client, "remember", {"text": "x"})
                whoami = structured(await client.call_tool("whoami", {}))
                return tools, error, took, whoami

        tools, error, took, whoami = anyio.run(scenario)
        health = healthz(bridge)
    assert tools == {"whoami", "usage"}  # the built-ins keep being served
    assert error.error.code == UPSTREAM_UNAVAILABLE
    assert error.error.message.startswith("upstream_unavailable: the tool server is not working")
    assert "exited before it answered initialize" in error.error.message
    assert error.error.data["code"] == "upstream_unavailable"
    assert took < 5
    assert whoami["developer_id"] == str(developer.id)
    assert health.status_code == 200
    assert health.json()["upstream"]["state"] in {"down", "starting"}
    assert health.json()["upstream"]["transport"] == "stdio"
    usage_written(2)
    assert dict(UsageEvent.objects.filter(developer=developer).values_list("tool_name", "ok")) == {
        "remember": False,
        "whoami": True,
    }


def test_an_upstream_that_crashes_mid_call_is_restarted(gateway_bridge):
    developer = DeveloperFactory()
    bridge = gateway_bridge  # the session's (old_hotcross over stdio): left up again, as the test asserts

    async def scenario():
        async with http_client(bridge.url, developer.plain_key) as client:
            before = structured(await client.call_tool("process", {}))["pid"]
            counted = healthz(bridge).json()["upstream"]  # the upstream is up: its counts so far
            error, took = await refused(client, "crash")
            whoami = structured(await client.call_tool("whoami", {}))
            deadline = time.monotonic() + 20
            while True:  # restarted after its back-off (0.5 s after a first crash: not a setting)
                try:
                    after = structured(await client.call_tool("process", {}))["pid"]
                    break
                except Exception as exc:
                    assert mcp_error(exc).error.code == UPSTREAM_UNAVAILABLE
                    assert time.monotonic() < deadline, "the crashed upstream was not restarted"
                    await anyio.sleep(0.05)
            return before, counted, error, took, whoami, after

    before, counted, error, took, whoami, after = anyio.run(scenario)
    health = healthz(bridge).json()
    assert error.error.code == UPSTREAM_UNAVAILABLE
    assert "stopped while answering tools/call 'crash'" in error.error.message
    assert "it is being restarted" in error.error.message
    assert took < 5
    assert whoami["developer_id"] == str(developer.id)
    assert after != before
    assert health["upstream"]["state"] == "up"
    # This test's crash, and the start after it (on a server of its own: crashes >= 1, starts >= 2).
    assert counted["state"] == "up"
    assert health["upstream"]["crashes"] >= counted["crashes"] + 1
    assert health["upstream"]["starts"] >= counted["starts"] + 1
    usage_written(3)
    assert UsageEvent.objects.filter(developer=developer, tool_name="crash", ok=False).count() == 1


def test_an_upstream_that_sleeps_past_the_timeout(tmp_path):
    developer = DeveloperFactory()

    async def scenario():
        env = gateway_env(OLD_HOTCROSS, HOTCROSS_MCP_UPSTREAM_TIMEOUT="0.5")
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, **env) as client:
                error, took = await refused(client, "sleep", {"seconds": 30})
                whoami = structured(await client.call_tool("whoami", {}))
                pong = await client.call_tool("ping", {})
                return error, took, whoami, pong

    error, took, whoami, pong = anyio.run(scenario)
    assert error.error.code == UPSTREAM_TIMEOUT
    assert error.error.message.startswith("upstream_timeout: the tool server did not answer")
    assert "within 0.5 s (HOTCROSS_MCP_UPSTREAM_TIMEOUT)" in error.error.message
    assert took < 5
    assert whoami["developer_id"] == str(developer.id)
    assert pong.content[0].text == "pong"  # a slow call does not take the upstream down
    usage_written(3)
    assert UsageEvent.objects.filter(developer=developer, tool_name="sleep", ok=False).count() == 1


def test_a_command_that_does_not_exist(tmp_path):
    developer = DeveloperFactory()
    with run_uvicorn(tmp_path, **gateway_env("/nonexistent/hotcross-upstream --stdio")) as bridge:

        async def scenario():
            async with http_client(bridge.url, developer.plain_key) as client:
                return await refused(client, "anything")

        error, took = anyio.run(scenario)
        health = healthz(bridge)
    assert took < 5
    assert error.error.code == UPSTREAM_UNAVAILABLE
    assert "its command was not found (HOTCROSS_MCP_UPSTREAM)" in error.error.message
    assert "/nonexistent" not in error.error.message  # command lines are for the log, not for clients
    assert health.status_code == 200


def test_an_upstream_that_answers_garbage(tmp_path):
    developer = DeveloperFactory()
    garbage = shlex.join(
        [sys.executable, "-c", "import time; print('this is not JSON-RPC', flush=True); time.sleep(60)"]
    )

    async def scenario():
        env = gateway_env(garbage, HOTCROSS_MCP_UPSTREAM_START_TIMEOUT="0.5")
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, **env) as client:
                error, took = await refused(client, "anything")
                whoami = structured(await client.call_tool("whoami", {}))
                return error, took, whoami

    error, took, whoami = anyio.run(scenario)
    assert error.error.code == UPSTREAM_UNAVAILABLE
    assert error.error.data["code"] == "upstream_unavailable"
    # Refused once the start timeout is over: either while it waits ("did not start within 0.5 s") or after.
    assert "initialize within 0.5 s" in error.error.message or "did not start within 0.5 s" in error.error.message
    assert took < 10
    assert whoami["developer_id"] == str(developer.id)
