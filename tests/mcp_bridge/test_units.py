"""The bridge's pieces in-process: tool registration, caller binding, configuration checks, Host/Origin rules."""

from __future__ import annotations

import inspect
import sys
import types
import uuid

import anyio
import pytest
from django.core.checks.registry import registry
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from mcp import Client

from accounts.credentials import Principal
from accounts.models import UsageEvent
from mcp_bridge import metering
from mcp_bridge.auth import caller_bound, current_caller
from mcp_bridge.checks import check_database_threads, check_tool_modules
from mcp_bridge.http import host_allowed, origin_allowed
from mcp_bridge.server import build_server
from mcp_bridge.tools import bind_caller, tool, tools_of
from tests.factories import DeveloperFactory
from tests.support.mcp import SAMPLE_TOOLS, db, mcp_error, structured

CALLER = Principal(
    developer_id=uuid.uuid4(),
    organization_id=uuid.uuid4(),
    email="ada@example.com",
    first_name="Ada",
    last_name="L",
    organization_name="Acme",
    subscription_status="active",
    max_seats=3,
)


def a_tool(x: int, _developer_id: uuid.UUID, _organization_id: uuid.UUID) -> str:
    """Doc of a_tool."""
    return f"{x}:{_developer_id}:{_organization_id}"


def test_bind_caller_hides_the_caller_parameters_and_fills_them_from_the_caller():
    bound = bind_caller(a_tool, current_caller)
    assert list(inspect.signature(bound).parameters) == ["x"]
    assert bound.__name__ == "a_tool"
    assert bound.__doc__ == "Doc of a_tool."

    async def call():
        with caller_bound(CALLER):
            return await bound(x=2, _developer_id="spoofed", _organization_id="spoofed")

    assert anyio.run(call) == f"2:{CALLER.developer_id}:{CALLER.organization_id}"


def test_a_bound_tool_outside_the_bridge_has_no_caller():
    bound = bind_caller(a_tool, current_caller)
    with pytest.raises(RuntimeError, match="No authenticated caller"):
        anyio.run(lambda: bound(x=1))


@pytest.fixture
def tool_module(monkeypatch):
    def make(name: str, **attributes) -> str:
        module = types.ModuleType(name)
        for key, value in attributes.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)
        return name

    return make


def test_tool_modules_that_cannot_be_used_are_reported_clearly(tool_module):
    with pytest.raises(ImproperlyConfigured, match=r"cannot import the tool module 'no_such\.tools'"):
        tools_of(["no_such.tools"])
    with pytest.raises(ImproperlyConfigured, match="has no TOOLS list"):
        tools_of([tool_module("tools_without_list")])
    with pytest.raises(ImproperlyConfigured, match="which is not a function"):
        tools_of([tool_module("tools_with_junk", TOOLS=["whoami"])])


def test_two_tools_with_one_name_are_refused(tool_module):
    @tool(name="whoami")
    def impostor() -> str:
        return "me"

    module = tool_module("impostor_tools", TOOLS=[impostor])
    with pytest.raises(ImproperlyConfigured, match="more than one tool is named whoami"):
        build_server(modules=["mcp_bridge.tools.builtin", module])


def test_system_checks_report_a_bad_hotcross_mcp_tools(settings, tool_module):
    assert check_tool_modules in registry.get_checks()
    assert check_database_threads in registry.get_checks(include_deployment_checks=True)
    settings.HOTCROSS_MCP_TOOLS = [SAMPLE_TOOLS]
    assert check_tool_modules() == []

    settings.HOTCROSS_MCP_TOOLS = ["no_such.tools"]
    assert [m.id for m in check_tool_modules()] == ["mcp_bridge.E001"]

    @tool(name="usage")
    def other_usage() -> str:
        return ""

    settings.HOTCROSS_MCP_TOOLS = [tool_module("clashing_tools", TOOLS=[other_usage])]
    assert [m.id for m in check_tool_modules()] == ["mcp_bridge.E002"]


def test_deploy_check_warns_when_the_bridge_could_take_the_whole_pool(settings):
    pooled = connection.vendor == "postgresql"  # SQLite: no pool, nothing to warn about
    max_size = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] if pooled else 20
    settings.HOTCROSS_MCP_DB_THREADS = 500
    assert [m.id for m in check_database_threads()] == (["mcp_bridge.W001"] if pooled else [])
    # Two pools (tools, and key checks/metering) of that many threads each can hold a connection apiece.
    settings.HOTCROSS_MCP_DB_THREADS = max_size // 2
    assert [m.id for m in check_database_threads()] == (["mcp_bridge.W001"] if pooled else [])
    settings.HOTCROSS_MCP_DB_THREADS = max_size // 2 - 1
    assert check_database_threads() == []


def test_host_and_origin_follow_django_rules(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["api.hotcross.test", ".customers.test"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://console.partner.test", "https://*.tools.test"]
    assert host_allowed("api.hotcross.test")
    assert host_allowed("api.hotcross.test:8443")
    assert host_allowed("acme.customers.test")
    assert not host_allowed("evil.test")
    assert not host_allowed("")
    assert origin_allowed("https://api.hotcross.test")
    assert origin_allowed("https://console.partner.test")
    assert not origin_allowed("https://evil.test")
    assert not origin_allowed("null")
    assert origin_allowed("https://inspector.tools.test")  # Django's wildcard form of CSRF_TRUSTED_ORIGINS
    assert not origin_allowed("http://inspector.tools.test")  # … for its scheme only
    assert not origin_allowed("https://tools.test.evil.test")
    assert not origin_allowed("http://[::1")  # unparsable: refused, not a server error
    assert not origin_allowed("ftp://api.hotcross.test")

    settings.ALLOWED_HOSTS = []
    assert not host_allowed("localhost")
    settings.DEBUG = True  # as Django: DEBUG with no ALLOWED_HOSTS allows the local names only
    assert host_allowed("localhost:8000")
    assert host_allowed("127.0.0.1:8000")
    assert not host_allowed("evil.test")

    settings.ALLOWED_HOSTS = ["*"]
    assert host_allowed("anything.test")
    assert host_allowed("evil.test")  # refused above: the answers host_allowed remembers go with the setting


@pytest.mark.django_db(transaction=True)
def test_in_process_the_stdio_server_rechecks_its_key_and_meters(settings):
    settings.HOTCROSS_MCP_TOOLS = [SAMPLE_TOOLS]
    developer = DeveloperFactory()

    async def scenario():
        async with Client(build_server(stdio_key=developer.plain_key)) as client:
            echoed = structured(await client.call_tool("echo", {"text": "in-process"}))
        await metering.flush_at_stop()  # what `manage.py mcp_server` does when its session ends
        return echoed

    assert anyio.run(scenario)["developer_id"] == str(developer.id)
    assert list(UsageEvent.objects.values_list("tool_name", "ok")) == [("echo", True)]


def test_without_a_transport_that_authenticates_every_request_is_refused(settings):
    settings.HOTCROSS_MCP_TOOLS = [SAMPLE_TOOLS]

    async def scenario():
        async with Client(build_server()) as client:
            await client.call_tool("ping", {})

    with pytest.raises(Exception) as raised:
        anyio.run(scenario)
    assert mcp_error(raised.value).data["code"] == "invalid_key"


def test_the_bare_server_serves_tools_with_no_caller_and_no_key(tool_module):
    def ping() -> str:
        return "pong"

    module = tool_module("bare_tools", TOOLS=[ping])

    async def scenario():
        async with Client(build_server(bridged=False, modules=[module])) as client:
            return await client.call_tool("ping", {})

    assert structured(anyio.run(scenario)) == {"result": "pong"}


@pytest.mark.django_db(transaction=True)
def test_when_too_many_events_wait_for_the_database_calls_are_refused_not_served_unmetered(settings, monkeypatch):
    settings.HOTCROSS_MCP_TOOLS = [SAMPLE_TOOLS]
    monkeypatch.setattr(metering, "MAX_BUFFERED", 0)
    developer = DeveloperFactory()

    async def scenario():
        async with Client(build_server(stdio_key=developer.plain_key)) as client:
            await client.call_tool("echo", {"text": "one too many"})

    with pytest.raises(Exception) as raised:
        anyio.run(scenario)
    assert mcp_error(raised.value).data["code"] == "service_unavailable"
    assert not UsageEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_events_are_written_together_a_flush_interval_after_the_answers(settings):
    settings.HOTCROSS_MCP_TOOLS = [SAMPLE_TOOLS]
    settings.HOTCROSS_MCP_METERING_FLUSH_SECONDS = 0.3
    developer = DeveloperFactory()

    async def scenario():
        async with Client(build_server(stdio_key=developer.plain_key)) as client:
            for n in range(3):
                await client.call_tool("echo", {"text": str(n)})
            written_at_once = await db(UsageEvent.objects.count)
            await anyio.sleep(0.6)
            written_later = await db(UsageEvent.objects.count)
        await metering.flush_at_stop()
        return written_at_once, written_later

    assert anyio.run(scenario) == (0, 3)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_under_steady_load_events_are_written_once_per_flush_interval_not_call_by_call(settings):
    # Calls that arrive while an INSERT runs wait for the next interval instead of making an INSERT of their own.
    # Rows written by one statement share their transaction id (xmin): that counts the INSERTs.
    settings.HOTCROSS_MCP_TOOLS = [SAMPLE_TOOLS]
    settings.HOTCROSS_MCP_METERING_FLUSH_SECONDS = 0.1
    developer = DeveloperFactory()

    async def scenario():
        async with Client(build_server(stdio_key=developer.plain_key)) as client:
            started = anyio.current_time()
            calls = 0
            while anyio.current_time() - started < 0.8:
                await client.call_tool("ping", {})
                calls += 1
        await metering.flush_at_stop()
        return calls

    calls = anyio.run(scenario)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT xmin::text) FROM accounts_usageevent")
        events, inserts = cursor.fetchone()
    assert events == calls > 50  # one INSERT per call or two would be 25 or more
    assert inserts <= 0.8 / 0.1 + 3
