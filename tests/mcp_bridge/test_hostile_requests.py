"""Requests a client should not send, against a real uvicorn: a clear 4xx or JSON-RPC error, never a 500 or a
traceback in the server's log, and nothing metered that was not served."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from accounts.models import UsageEvent
from mcp_bridge.server import server_version
from tests.factories import DeveloperFactory
from tests.support.mcp import http_client, structured, usage_written

pytestmark = pytest.mark.django_db(transaction=True)

JSON = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def raw_post(url: str, body: bytes, headers: list[tuple[str, str]] | None = None) -> httpx2.Response:
    return httpx2.post(url, content=body, headers=[*JSON.items(), *(headers or [])], timeout=30)


def rpc(method: str, params: object, request_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def test_an_unauthenticated_deeply_nested_body_is_a_401_without_a_traceback(mcp_http):
    for body in (b"[" * 1000, b"{" * 5000, b'{"id": 3, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"):
        response = raw_post(mcp_http.url, body)
        assert response.status_code == 401, response.text
        assert response.json()["id"] is None
        assert response.json()["error"]["data"]["code"] == "invalid_key"
    # A shallow body still gets its id back.
    assert raw_post(mcp_http.url, b'{"jsonrpc": "2.0", "id": 42, "method": "tools/list"}').json()["id"] == 42
    assert "Traceback" not in mcp_http.log()
    assert mcp_http.alive()


def test_two_authorization_headers_are_a_401_even_when_one_key_is_valid(mcp_http):
    developer = DeveloperFactory()
    good = ("Authorization", f"Bearer {developer.plain_key}")
    body = b'{"jsonrpc": "2.0", "id": 5, "method": "tools/list"}'
    for headers in (
        [good, good],
        [good, ("Authorization", "Bearer hc_live_" + "x" * 40)],
        [("Authorization", ""), good],
    ):
        response = raw_post(mcp_http.url, body, headers)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="hotcross", resource_metadata=')  # /mcp offers OAuth (issue 13)
        assert 'error="invalid_token"' in challenge
        error = response.json()["error"]
        assert error["data"]["code"] == "invalid_key"
        assert "More than one credential" in error["message"]
    assert raw_post(mcp_http.url, body, [good]).status_code == 200


@pytest.mark.parametrize("name", [[], {}, 3, None, True])
def test_a_tool_name_that_is_not_a_string_is_invalid_params_and_not_metered(mcp_http, name):
    developer = DeveloperFactory()
    auth = [("Authorization", f"Bearer {developer.plain_key}")]
    response = httpx2.post(
        mcp_http.url,
        json=rpc("tools/call", {"name": name, "arguments": {}}, 11),
        headers={**JSON, **dict(auth)},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["id"] == 11
    assert response.json()["error"]["code"] == -32602
    assert "tool name must be a string" in response.json()["error"]["message"]
    # Served like an unknown tool: refused before any tool ran, so not metered (docs/clients.md, "Refusals").
    ok = raw_post(mcp_http.url, b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ping"}}', auth)
    assert ok.json()["result"]["isError"] is False
    usage_written(1)
    assert list(UsageEvent.objects.values_list("tool_name", flat=True)) == ["ping"]
    assert "Traceback" not in mcp_http.log()


@pytest.mark.parametrize("name", ["no_such_prompt", [], {"a": 1}, 7])
def test_prompts_get_with_an_unknown_or_non_string_name_is_invalid_params(mcp_http, name):
    developer = DeveloperFactory()
    response = httpx2.post(
        mcp_http.url,
        json=rpc("prompts/get", {"name": name}, 12),
        headers={**JSON, "Authorization": f"Bearer {developer.plain_key}"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32602
    assert "Traceback" not in mcp_http.log()


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"])
def test_methods_other_than_post_are_405_with_allow_post(mcp_http, method):
    developer = DeveloperFactory()
    for url in (mcp_http.url, mcp_http.url + "/"):
        for auth in ({"Authorization": f"Bearer {developer.plain_key}"}, {}):
            # A timeout instead of an answer here would be the never-ending SSE stream of an authenticated GET.
            response = httpx2.request(
                method, url, headers={"Accept": "text/event-stream, application/json", **auth}, timeout=5
            )
            assert response.status_code == 405, (method, url, auth)
            assert response.headers["allow"] == "POST"


def test_clients_see_the_project_version_and_clean_tool_descriptions(mcp_http):
    developer = DeveloperFactory()

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            return client.server_info, tools, structured(await client.call_tool("ping", {}))

    info, tools, pong = anyio.run(scenario)
    assert pong == {"result": "pong"}
    assert info.name == "hotcross"
    assert info.version == server_version() != ""
    assert server_version()[0].isdigit()
    assert tools["usage"].description == (
        "Your tool calls recorded this calendar month (UTC), by tool, and your organization's total.\n\n"
        "Calls are counted once answered, so this call is not in its own figures."
    )
    for tool in tools.values():
        assert tool.description and "\n    " not in tool.description, tool.name
