"""Tool gating (issue 16, step 2): `tools/list` shows the plan's tools, `tools/call` outside it is refused with
`tool_not_in_plan` (JSON-RPC -32003) naming the plan, never metered; over HTTP and stdio, for built-in, module
(`HOTCROSS_MCP_TOOLS`) and gateway tools; a staff change reaches a running server within a second."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest

from accounts.models import UsageEvent
from accounts.services import plans as plan_services
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory
from tests.support.mcp import db, http_client, mcp_error, stdio_session, usage_written
from tests.support.metrics import sample
from tests.support.servers import RunningServer
from tests.support.upstreams import gateway_bridge_server, metrics

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def gateway_bridge(django_db_setup, tmp_path_factory) -> Iterator[RunningServer]:
    """A bridge in gateway mode (old_hotcross over stdio, list timer 300 s, /metrics readable) for this module's tests;
    each brings its own developer."""
    with gateway_bridge_server(tmp_path_factory.mktemp("gateway-bridge")) as bridge:
        yield bridge


def team_developer(patterns: str = "whoami\necho\nmy_*\nremember"):
    plan = PlanFactory(code="team", name="Team", allows_all_tools=False, allowed_tools=patterns)
    return DeveloperFactory(organization=OrganizationFactory(plan=plan)), plan


async def refused_call(client, name: str, arguments: dict | None = None):
    with pytest.raises(Exception) as raised:
        await client.call_tool(name, arguments or {})
    return mcp_error(raised.value)


def assert_not_in_plan(error, tool: str) -> None:
    assert error.code == -32003
    assert error.message.startswith("tool_not_in_plan: ")
    assert tool in error.message and "Team (team)" in error.message
    assert error.data["code"] == "tool_not_in_plan" and error.data["plan"] == "team"


def test_http_lists_only_the_plans_tools_and_refuses_the_others_unmetered(mcp_http):
    developer, _plan = team_developer()

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            ok = await client.call_tool("echo", {"text": "hi"})  # module tool in the plan
            mine = await client.call_tool("my_email", {})  # by pattern
            usage_refused = await refused_call(client, "usage")  # built-in, not in the plan
            ping_refused = await refused_call(client, "ping")  # module tool, not in the plan
            return names, ok, mine, usage_refused, ping_refused

    names, ok, mine, usage_refused, ping_refused = anyio.run(scenario)
    assert names == {"whoami", "echo", "my_email"}
    assert not ok.is_error and not mine.is_error
    assert_not_in_plan(usage_refused, "usage")
    assert_not_in_plan(ping_refused, "ping")
    usage_written(2)
    assert sorted(UsageEvent.objects.values_list("tool_name", flat=True)) == ["echo", "my_email"]


def test_whoami_states_the_plan_and_its_limits(mcp_http):
    plan = PlanFactory(code="pro", name="Pro", rate_limit_per_developer=120, monthly_calls_per_seat=500)
    developer = DeveloperFactory(organization=OrganizationFactory(plan=plan, max_seats=2))

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            return (await client.call_tool("whoami", {})).structured_content

    assert anyio.run(scenario)["plan"] == {
        "code": "pro",
        "name": "Pro",
        "tools": "all",
        "prompts": "all",
        "resources": "all",
        "rate_limit_per_developer_per_minute": 120,
        "rate_limit_per_organization_per_minute": None,
        "monthly_calls_per_seat": 500,
        "monthly_cap": 1000,
        "at_cap": "refuse",
    }


def test_a_staff_change_of_plan_reaches_the_server_within_a_second(mcp_http):
    developer, _plan = team_developer()
    wider = PlanFactory(code="all", name="All")

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            await refused_call(client, "usage")
            await db(plan_services.set_plan, organization=developer.organization, plan=wider)
            started = time.monotonic()
            while True:
                try:
                    await client.call_tool("usage", {})
                    return time.monotonic() - started
                except Exception:
                    assert time.monotonic() - started < 3
                    await anyio.sleep(0.05)

    assert anyio.run(scenario) <= 1.5


def test_refusals_are_counted_in_metrics(gateway_bridge):
    developer, _plan = team_developer()
    refusals = {"name": "hotcross_tool_calls_refused_total", "reason": "tool_not_in_plan"}
    before = sample(metrics(gateway_bridge), **refusals)  # the module's server: other tests' refusals too

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            await refused_call(client, "usage")

    anyio.run(scenario)
    assert sample(metrics(gateway_bridge), **refusals) == before + 1


def test_stdio_gates_the_same_way(tmp_path):
    developer, _plan = team_developer()

    async def scenario():
        with open(tmp_path / "stderr.log", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                return names, await refused_call(client, "usage")

    names, refused = anyio.run(scenario)
    assert names == {"whoami", "echo", "my_email"}
    assert_not_in_plan(refused, "usage")


def test_gateway_tools_are_gated_too(gateway_bridge):
    developer, _plan = team_developer("whoami\nremember")

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            remembered = await client.call_tool("remember", {"text": "x"})
            return names, remembered, await refused_call(client, "ping")

    names, remembered, refused = anyio.run(scenario)
    assert names == {"whoami", "remember"}
    assert not remembered.is_error
    assert_not_in_plan(refused, "ping")
    usage_written(1)  # the served call's usage, which the server writes after answering: before the flush
