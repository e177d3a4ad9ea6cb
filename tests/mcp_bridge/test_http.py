"""The bridge over streamable HTTP, through uvicorn serving hotcross.asgi:application, with the mcp SDK's client."""

from __future__ import annotations

import datetime
import time

import anyio
import httpx2
import pytest
from django.utils import timezone

from accounts import services
from accounts.models import SubscriptionStatus, UsageEvent
from hotcross import local_env
from tests.factories import DeveloperFactory, OrganizationFactory, UsageEventFactory
from tests.support.mcp import db, http_client, mcp_error, refused_within, run_uvicorn, structured, usage_written
from tests.support.oauth import issue_token

pytestmark = pytest.mark.django_db(transaction=True)

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}


def post(url: str, key: str | None = None, body: dict | None = None, **headers: str) -> httpx2.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx2.post(url, json=body or TOOLS_LIST, headers={**ACCEPT, **headers}, timeout=30)


def test_lists_tools_and_keeps_the_caller_arguments_out_of_their_schemas(mcp_http):
    developer = DeveloperFactory()

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in anyio.run(scenario)}
    assert {"whoami", "usage", "echo", "caller_async", "legacy_kwargs", "my_email", "fail", "ping"} <= set(tools)
    for t in tools.values():
        assert not any(name.startswith("_") for name in t.input_schema.get("properties", {})), t.name
        assert "kwargs" not in t.input_schema.get("properties", {}), t.name
    assert set(tools["echo"].input_schema["properties"]) == {"text"}
    assert tools["my_email"].title == "My email"
    assert tools["whoami"].annotations.read_only_hint is True


def test_whoami_tells_the_developer_their_organization_and_seats(mcp_http):
    org = OrganizationFactory(name="Acme Corp", max_seats=4, subscription_status=SubscriptionStatus.TRIALING)
    developer = DeveloperFactory(organization=org, email="ada@acme.test", first_name="Ada", last_name="Lovelace")
    DeveloperFactory(organization=org)
    DeveloperFactory(organization=org, is_active=False)  # holds no seat

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            return structured(await client.call_tool("whoami", {}))

    assert anyio.run(scenario) == {
        "developer_id": str(developer.id),
        "email": "ada@acme.test",
        "name": "Ada Lovelace",
        "organization_id": str(org.id),
        "organization_name": "Acme Corp",
        "subscription_status": "trialing",
        "seats_used": 2,
        "max_seats": 4,
        "credential": "api_key",  # which credential (issue 13): a key here, "oauth" with the client's name otherwise
        "oauth_client": None,
        "plan": {  # no plan: every tool, no limit (issue 16; tests/plans covers plans)
            "code": None,
            "name": None,
            "tools": "all",
            "prompts": "all",
            "resources": "all",
            "rate_limit_per_developer_per_minute": None,
            "rate_limit_per_organization_per_minute": None,
            "monthly_calls_per_seat": None,
            "monthly_cap": None,
            "at_cap": None,
        },
    }


def test_usage_counts_this_calendar_month_by_tool_and_the_organization_total(mcp_http):
    developer = DeveloperFactory()
    colleague = DeveloperFactory(organization=developer.organization)
    outsider = DeveloperFactory()
    now = timezone.now()
    last_month = now.replace(day=1) - datetime.timedelta(days=1)
    for who, tool, when in [
        (developer, "echo", now),
        (developer, "echo", now),
        (developer, "fail", now),
        (developer, "echo", last_month),
        (colleague, "echo", now),
        (outsider, "echo", now),
    ]:
        UsageEventFactory(developer=who, tool_name=tool, created_at=when)

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            await client.call_tool("whoami", {})
            return structured(await client.call_tool("usage", {}))

    usage = anyio.run(scenario)
    assert usage["month"] == f"{timezone.localtime(now):%Y-%m}"
    assert usage["by_tool"] == {"echo": 2, "fail": 1, "whoami": 1}
    assert usage["developer_calls"] == 4
    assert usage["organization_calls"] == 5


def test_every_served_call_is_metered_with_its_outcome(mcp_http):
    developer = DeveloperFactory()

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            ok = await client.call_tool("echo", {"text": "hi"})
            failed = await client.call_tool("fail", {"reason": "test"})
            bad_arguments = await client.call_tool("echo", {"text": {"not": "a string"}})
            unknown = await client.call_tool("no_such_tool", {})
            return ok, failed, bad_arguments, unknown

    ok, failed, bad_arguments, unknown = anyio.run(scenario)
    assert not ok.is_error
    assert failed.is_error and "failed on purpose: test" in failed.content[0].text
    assert bad_arguments.is_error
    assert unknown.is_error  # not one of our tools: answered, not metered
    usage_written(3)  # the three served calls (waiting for a fourth would only run into the timeout)
    events = list(UsageEvent.objects.order_by("id").values_list("tool_name", "ok", "developer_id", "organization_id"))
    org = developer.organization_id
    assert events == [
        ("echo", True, developer.id, org),
        ("fail", False, developer.id, org),
        ("echo", False, developer.id, org),
    ]
    assert all(e.duration_ms >= 0 for e in UsageEvent.objects.all())


def test_tools_get_the_real_caller_whatever_the_client_sends(mcp_http):
    developer = DeveloperFactory()
    other = DeveloperFactory()
    spoof = {"_developer_id": str(other.id), "_organization_id": str(other.organization_id)}

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            return (
                structured(await client.call_tool("echo", {"text": "x", **spoof})),
                structured(await client.call_tool("whoami", spoof)),
                structured(await client.call_tool("caller_async", spoof)),
                structured(await client.call_tool("legacy_kwargs", {"n": 3, **spoof})),
                structured(await client.call_tool("my_email", spoof)),
                structured(await client.call_tool("access_token", spoof)),
            )

    echo, whoami, caller_async, legacy, email, token = anyio.run(scenario)
    mine = (str(developer.id), str(developer.organization_id))
    assert (echo["developer_id"], echo["organization_id"]) == mine
    assert (whoami["developer_id"], whoami["organization_id"]) == mine
    assert caller_async == {"result": f"{developer.id}/{developer.organization_id}"}
    assert legacy == {"result": f"3:{developer.id}:{developer.organization_id}"}
    assert email == {"result": developer.email}
    assert token == {"client_id": str(developer.id), "organization_id": str(developer.organization_id)}
    usage_written(1)
    assert set(UsageEvent.objects.values_list("developer_id", flat=True)) == {developer.id}


def test_no_key_or_an_unknown_key_is_401_with_a_bearer_challenge(mcp_http):
    missing = post(mcp_http.url)
    assert missing.status_code == 401
    # /mcp offers OAuth discovery (RFC 9728; issue 13): the challenge names its protected resource metadata.
    # The test servers keep the default public URL (server_env drops HOTCROSS_* settings).
    metadata = f"{local_env.DEFAULT_PUBLIC_URL}/.well-known/oauth-protected-resource/mcp"
    # The scope to ask for (MCP authorization: "MCP servers SHOULD include a scope parameter"): the only one, mcp.
    assert missing.headers["www-authenticate"] == (
        f'Bearer realm="hotcross", resource_metadata="{metadata}", scope="mcp"'
    )
    body = missing.json()
    assert body["id"] == 7
    assert body["error"]["data"]["code"] == "invalid_key"
    assert "Authorization: Bearer" in body["error"]["message"]

    unknown = post(mcp_http.url, "hc_live_" + "x" * 40)
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"].startswith('Bearer realm="hotcross", resource_metadata=')
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]
    assert unknown.json()["error"]["message"].startswith("invalid_key: This API key is not valid.")

    assert post(mcp_http.url, "x" * 10_000).status_code == 401  # too long: refused before any hashing
    assert post(mcp_http.url, body={"jsonrpc": "2.0", "id": 1}, Authorization="Basic abc").status_code == 401

    async def scenario():
        async with http_client(mcp_http.url, "hc_live_" + "y" * 40) as client:
            await client.list_tools()

    with pytest.raises(BaseException) as raised:
        anyio.run(scenario)
    assert mcp_error(raised.value).message.startswith("invalid_key: ")
    assert mcp_http.alive()


def _revoked(developer):
    services.revoke_key(developer=developer)


def _expired(developer):
    services.set_key_expiry(developer=developer, expires_at=timezone.now() - datetime.timedelta(minutes=1))


def _inactive(developer):
    services.deactivate_developer(developer=developer)


def _past_due(developer):
    services.set_status(organization=developer.organization, status="past_due")


def _rotated(developer):
    services.rotate_key(developer=developer)


@pytest.mark.parametrize(
    ("refuse", "code", "says"),
    [
        (_revoked, "key_revoked", "was revoked on"),
        (_expired, "key_expired", "expired on"),
        (_rotated, "key_rotated", "was replaced by a newer one on"),
    ],
)
def test_a_key_that_no_longer_works_is_401_invalid_token_with_the_refusal_code_and_message(
    mcp_http, refuse, code, says
):
    """MCP authorization: "Invalid or expired tokens MUST receive a HTTP 401 response" (was 403, issue 26 item 14).
    The body keeps the stable code and the message that says what to do."""
    developer = DeveloperFactory()
    refuse(developer)

    response = post(mcp_http.url, developer.plain_key)
    assert response.status_code == 401
    metadata = f"{local_env.DEFAULT_PUBLIC_URL}/.well-known/oauth-protected-resource/mcp"
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="hotcross", resource_metadata="{metadata}", scope="mcp", error="invalid_token", '
        'error_description="The API key or access token is not valid."'
    )
    error = response.json()["error"]
    assert error["code"] == -32001
    assert error["data"]["code"] == code
    assert says in error["data"]["message"]
    assert error["message"] == f"{code}: {error['data']['message']}"

    # The key-only URL says the same, without OAuth discovery or a scope (it offers no OAuth).
    at_key = post(mcp_http.base + "/mcp/key", developer.plain_key)
    assert at_key.status_code == 401
    assert at_key.headers["www-authenticate"] == (
        'Bearer realm="hotcross", error="invalid_token", error_description="The API key is not valid."'
    )
    assert at_key.json()["error"]["data"]["code"] == code

    assert_sdk_client_refused(mcp_http, developer.plain_key, code)


@pytest.mark.parametrize(
    ("refuse", "code", "says"),
    [
        (_inactive, "developer_inactive", "is deactivated"),
        (_past_due, "subscription_inactive", "subscription is past_due"),
    ],
)
def test_a_working_key_without_standing_is_403_with_the_refusal_code_and_message(mcp_http, refuse, code, says):
    """The key still works (reactivating the developer or paying makes it serve again): a 403 with no challenge, so
    no client starts an OAuth sign-in that would be refused for the same reason."""
    developer = DeveloperFactory()
    refuse(developer)

    for url in (mcp_http.url, mcp_http.base + "/mcp/key"):
        response = post(url, developer.plain_key)
        assert response.status_code == 403
        assert "www-authenticate" not in response.headers
        error = response.json()["error"]
        assert error["code"] == -32001
        assert error["data"]["code"] == code
        assert says in error["data"]["message"]
        assert error["message"] == f"{code}: {error['data']['message']}"

    assert_sdk_client_refused(mcp_http, developer.plain_key, code)


def test_an_oauth_token_that_no_longer_works_is_401_and_one_without_standing_is_403(mcp_http):
    """The same split for access tokens at /mcp: a token whose developer's access ended (the key's expiry ends
    tokens too) is 401 invalid_token; a deactivated developer's token is 403."""
    resource = f"{local_env.DEFAULT_PUBLIC_URL}/mcp"  # what the session's server takes tokens for
    expired, inactive = DeveloperFactory(), DeveloperFactory()
    tokens = {developer.pk: issue_token(developer, resource) for developer in (expired, inactive)}
    assert post(mcp_http.url, tokens[expired.pk]).status_code == 200
    _expired(expired)
    _inactive(inactive)

    def refused(developer) -> httpx2.Response:
        started = time.monotonic()
        while (response := post(mcp_http.url, tokens[developer.pk])).status_code == 200:
            assert time.monotonic() - started < 1.5, "the server's key-check memory lasts at most a second"
            time.sleep(0.05)
        return response

    ended = refused(expired)
    assert ended.status_code == 401
    challenge = ended.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge and 'scope="mcp"' in challenge and "resource_metadata=" in challenge
    assert ended.json()["error"]["data"]["code"] == "key_expired"
    standing = refused(inactive)
    assert standing.status_code == 403
    assert "www-authenticate" not in standing.headers
    assert standing.json()["error"]["data"]["code"] == "developer_inactive"


def test_after_a_downgrade_the_newest_seat_holder_is_refused_and_the_others_keep_access(mcp_http):
    org = OrganizationFactory(name="Small Co", max_seats=3)
    now = timezone.now()
    first, second, newest = (
        DeveloperFactory(organization=org, seat_claimed_at=now - datetime.timedelta(minutes=m)) for m in (30, 20, 10)
    )
    services.set_seats(organization=org, max_seats=2)

    async def scenario():
        results = {}
        for developer in (first, second):
            async with http_client(mcp_http.url, developer.plain_key) as client:
                results[developer.id] = structured(await client.call_tool("whoami", {}))
        try:
            async with http_client(mcp_http.url, newest.plain_key) as client:
                await client.call_tool("whoami", {})
        except BaseException as exc:
            results["refused"] = mcp_error(exc)
        return results

    results = anyio.run(scenario)
    assert results[first.id]["seats_used"] == 3
    assert results[first.id]["max_seats"] == 2
    assert results["refused"].data["code"] == "seat_limit_exceeded"
    assert "Small Co has 2 seats" in results["refused"].message
    assert post(mcp_http.url, newest.plain_key).status_code == 403


def test_revocation_mid_session_refuses_the_next_call(mcp_http):
    developer = DeveloperFactory()

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            first = structured(await client.call_tool("whoami", {}))
            await db(services.revoke_key, developer=developer)
            # The server is another process: its memory of the key check lasts at most a second.
            refused, after = await refused_within(lambda: client.call_tool("whoami", {}), 3)
            return first, refused, after

    first, refused, after = anyio.run(scenario)
    assert first["developer_id"] == str(developer.id)
    assert refused.data["code"] == "key_revoked"
    assert after < 1.5
    served = UsageEvent.objects.filter(developer=developer)
    assert served.count() >= 1 and served.filter(ok=False).count() == 0


def test_mcp_and_mcp_slash_are_the_same_endpoint(mcp_http):
    developer = DeveloperFactory()
    for url in (mcp_http.url, mcp_http.url + "/"):
        response = post(url, developer.plain_key)
        assert response.status_code == 200, (url, response.text)
        assert {t["name"] for t in response.json()["result"]["tools"]} >= {"whoami", "usage"}
        assert post(url).status_code == 401


def test_host_and_origin_follow_allowed_hosts(mcp_http):
    developer = DeveloperFactory()
    assert post(mcp_http.url, developer.plain_key, Host="evil.example").status_code == 421
    assert post(mcp_http.url, developer.plain_key, Origin="http://evil.example").status_code == 403
    assert post(mcp_http.url, developer.plain_key, Origin="null").status_code == 403
    assert post(mcp_http.url, developer.plain_key, Origin="http://[::1").status_code == 403
    assert post(mcp_http.url, Host="evil.example").status_code == 421  # before the key is even looked at
    assert post(mcp_http.url, developer.plain_key, Host="localhost:9").status_code == 200
    assert post(mcp_http.url, developer.plain_key, Origin="http://localhost:6274").status_code == 200


def test_django_is_served_beside_mcp(mcp_http):
    assert httpx2.get(f"{mcp_http.base}/healthz", timeout=10).json() == {"status": "ok", "database": "up"}
    assert httpx2.get(f"{mcp_http.base}/admin/login/", timeout=10).status_code == 200
    assert httpx2.get(f"{mcp_http.base}/mcp/other", timeout=10).status_code == 404


def test_usage_sees_calls_just_answered_and_a_stop_writes_the_buffer(tmp_path):
    """Over HTTP too: `usage` writes the buffer before it counts, and a graceful stop writes what is left."""
    developer = DeveloperFactory()
    with run_uvicorn(tmp_path, HOTCROSS_MCP_METERING_FLUSH_SECONDS="5") as server:

        async def scenario():
            async with http_client(server.url, developer.plain_key) as client:
                for n in range(2):
                    await client.call_tool("echo", {"text": str(n)})
                counted = structured(await client.call_tool("usage", {}))
                await client.call_tool("echo", {"text": "last"})
                return counted

        counted = anyio.run(scenario)
    assert counted["by_tool"] == {"echo": 2}
    # uvicorn was stopped (SIGTERM) well within the 5-second flush interval: its shutdown wrote the buffer.
    assert UsageEvent.objects.filter(developer=developer).count() == 4


def assert_sdk_client_refused(mcp_http, key: str, code: str) -> None:
    """The SDK's client calling a tool with `key` at /mcp gets the refusal `code` as its error; nothing metered."""

    async def scenario():
        async with http_client(mcp_http.url, key) as client:
            await client.call_tool("whoami", {})

    with pytest.raises(BaseException) as raised:
        anyio.run(scenario)
    assert mcp_error(raised.value).message.startswith(f"{code}: ")
    assert mcp_error(raised.value).data["code"] == code
    usage_written(0)
    assert not UsageEvent.objects.exists()


def test_a_request_without_a_key_is_told_both_headers_that_carry_one(mcp_http):
    """Issue 31: the 401 named only `Authorization: Bearer`, though `X-API-Key` works too (at /mcp/key, the one a
    client that drops a configured Authorization header needs)."""
    for url in (mcp_http.url, mcp_http.base + "/mcp/key"):
        response = post(url)
        assert response.status_code == 401
        message = response.json()["error"]["data"]["message"]
        assert "'Authorization: Bearer hc_live_…'" in message and "'X-API-Key: hc_live_…'" in message
