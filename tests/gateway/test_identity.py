"""An upstream written the old Hotcross way (tools declaring `_developer_id` / `_organization_id`) behind the bridge:
clients never see those arguments, the upstream always gets the authenticated caller, and a spoofed value is dropped.
"""

from __future__ import annotations

import json

import anyio
import httpx2
import pytest

from accounts import services
from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.support.mcp import db, http_client, refused_within, run_uvicorn, stdio_session, structured, usage_written
from tests.support.upstreams import OLD_HOTCROSS, gateway_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_identity_arguments_are_hidden_filled_and_spoof_proof_over_http(gateway_bridge):
    developer = DeveloperFactory()
    victim = DeveloperFactory()  # another organization's developer, whose ids a client tries to pass
    # The session's bridge: old_hotcross over stdio, HOTCROSS_MCP_UPSTREAM_ENV={"GREETING": "hello"}.

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            spoofed = await client.call_tool(
                "remember",
                {"text": "note", "_developer_id": str(victim.id), "_organization_id": str(victim.organization_id)},
            )
            project = await client.call_tool("project_of", {"_organization_id": str(victim.organization_id)})
            meta = await client.call_tool("caller_meta", {})
            process = await client.call_tool("process", {})
            fails = await client.call_tool("fails", {})
            return tools, spoofed, project, meta, process, fails

    tools, spoofed, project, meta, process, fails = anyio.run(scenario)

    assert set(tools["remember"].input_schema["properties"]) == {"text"}
    assert tools["remember"].input_schema["required"] == ["text"]
    assert tools["project_of"].input_schema["properties"] == {}
    assert "_organization_id" not in tools["project_of"].input_schema.get("required", [])
    assert structured(spoofed) == {
        "text": "note",
        "developer_id": str(developer.id),
        "organization_id": str(developer.organization_id),
    }
    assert project.content[0].text == f"projects of {developer.organization_id}"
    assert structured(meta) == {
        "hotcross/developer_id": str(developer.id),
        "hotcross/organization_id": str(developer.organization_id),
    }
    # The upstream's environment is what the operator gave it, not the bridge's (no database credential).
    assert structured(process)["greeting"] == "hello"
    assert structured(process)["database_url"] == ""
    # An upstream isError result passes through unchanged, and is metered as an error.
    assert fails.is_error is True
    assert fails.content[0].text == "Error executing tool fails"
    usage_written(5)
    outcomes = dict(UsageEvent.objects.filter(developer=developer).values_list("tool_name", "ok"))
    assert outcomes == {"remember": True, "project_of": True, "caller_meta": True, "process": True, "fails": False}
    assert not UsageEvent.objects.filter(developer=victim).exists()


def test_identity_over_stdio_bridge(tmp_path):
    developer = DeveloperFactory()
    victim = DeveloperFactory()

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            # The bridge remembers a key check for HOTCROSS_KEY_CACHE_SECONDS: a revocation reaches it that much later.
            env = gateway_env(OLD_HOTCROSS, HOTCROSS_KEY_CACHE_SECONDS="0.05")
            async with stdio_session(developer.plain_key, errlog, **env) as client:
                tools = {tool.name: tool for tool in (await client.list_tools()).tools}
                spoofed = await client.call_tool("remember", {"text": "n", "_developer_id": str(victim.id)})
                # A key revoked mid-session is refused for upstream tools as for built-in ones.
                await db(services.revoke_key, developer=developer)
                refusal, _took = await refused_within(lambda: client.call_tool("ping", {}), seconds=5)
                return tools, spoofed, refusal

    tools, spoofed, refusal = anyio.run(scenario)
    assert refusal.error.data["code"] == "key_revoked"
    assert {"whoami", "usage", "remember", "project_of"} <= set(tools)
    assert set(tools["remember"].input_schema["properties"]) == {"text"}
    assert structured(spoofed)["developer_id"] == str(developer.id)
    assert structured(spoofed)["organization_id"] == str(developer.organization_id)


def test_an_http_upstream_gets_the_service_credential_and_the_caller(tmp_path, old_hotcross_upstream):
    developer = DeveloperFactory()
    env = gateway_env(
        old_hotcross_upstream, HOTCROSS_MCP_UPSTREAM_HEADERS=json.dumps({"X-Service-Key": "svc-secret-1"})
    )
    with run_uvicorn(tmp_path, **env) as bridge:

        async def scenario():
            async with http_client(bridge.url, developer.plain_key) as client:
                key = await client.call_tool("service_key", {})
                spoofed = await client.call_tool("remember", {"text": "t", "_organization_id": "forged"})
                return key, spoofed

        key, spoofed = anyio.run(scenario)
        health = httpx2.get(f"{bridge.base}/healthz", timeout=10).json()
        log = bridge.log()
    assert key.content[0].text == "svc-secret-1"
    assert structured(spoofed)["organization_id"] == str(developer.organization_id)
    assert health["upstream"]["transport"] == "http" and health["upstream"]["state"] == "up"
    assert "svc-secret-1" not in json.dumps(health) and "svc-secret-1" not in log
