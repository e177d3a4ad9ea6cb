"""A rotated key over real HTTP: uvicorn serving hotcross.asgi:application, the mcp SDK's client and plain httpx (as in
tests/mcp_bridge)."""

import datetime

import anyio
import httpx2
import pytest
from django.utils import timezone

from accounts import services
from accounts.models import ReplacedKey
from tests.factories import DeveloperFactory
from tests.support.mcp import db, http_client, mcp_error, refused_within, structured

pytestmark = pytest.mark.django_db(transaction=True)

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}

# The server is the session's `mcp_http` (tests/accounts/conftest.py): each test brings its own developer.


def post(url: str, key: str) -> httpx2.Response:
    return httpx2.post(url, json=TOOLS_LIST, headers={**ACCEPT, "Authorization": f"Bearer {key}"}, timeout=30)


def test_a_rotated_away_key_is_401_key_rotated_with_the_date_and_the_organization(mcp_http):
    developer = DeveloperFactory(organization__name="Acme Corp", email="erin@acme.test")
    services.rotate_key(developer=developer)
    replaced_at = ReplacedKey.objects.get(developer=developer).replaced_at

    response = post(mcp_http.url, developer.plain_key)
    assert response.status_code == 401  # a credential that no longer works (MCP authorization; issue 26 item 14)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    error = response.json()["error"]
    message = (
        f"This key was replaced by a newer one on {replaced_at:%Y-%m-%d %H:%M} UTC. "
        "Use the new key, or ask an administrator of Acme Corp."
    )
    assert error == {
        "code": -32001,
        "message": f"key_rotated: {message}",
        "data": {"code": "key_rotated", "message": message},
    }
    # Nothing whoami would tell: not the developer, not the organization's id.
    assert str(developer.id) not in response.text and "erin@acme.test" not in response.text
    assert str(developer.organization_id) not in response.text

    async def scenario():
        async with http_client(mcp_http.url, developer.plain_key) as client:
            await client.call_tool("whoami", {})

    with pytest.raises(BaseException) as raised:
        anyio.run(scenario)
    assert mcp_error(raised.value).data == {"code": "key_rotated", "message": message}


def test_in_its_grace_period_the_old_key_works_over_http_and_is_refused_once_it_ends(mcp_http):
    developer = DeveloperFactory(organization__max_seats=1)
    _, new_key = services.rotate_key(developer=developer, grace=datetime.timedelta(minutes=15))

    async def scenario():
        async with http_client(mcp_http.url, new_key) as client:
            new = structured(await client.call_tool("whoami", {}))
        async with http_client(mcp_http.url, developer.plain_key) as client:
            old = structured(await client.call_tool("whoami", {}))

            def grace_ends():  # time passes: the stored end of the grace period is now in the past
                past = timezone.now() - datetime.timedelta(seconds=1)
                ReplacedKey.objects.filter(developer=developer).update(grace_until=past)

            await db(grace_ends)
            refused, after = await refused_within(lambda: client.call_tool("whoami", {}), 3)
        return new, old, refused, after

    new, old, refused, after = anyio.run(scenario)
    assert new["developer_id"] == old["developer_id"] == str(developer.id)
    assert new["seats_used"] == old["seats_used"] == 1  # one seat for both keys
    assert refused.data["code"] == "key_rotated"
    assert after < 1.5  # the server's memory of the key check lasts at most a second
    assert post(mcp_http.url, developer.plain_key).status_code == 401
    assert post(mcp_http.url, new_key).status_code == 200
