"""End to end, with real peers: uvicorn serving hotcross.asgi, the official `mcp` Python client's OAuth support
(`OAuthClientProvider`: discovery, dynamic registration, PKCE, refresh), and Debian's chromium through Playwright for
the developer's part (sign in with the emailed code read from the mail files, then Allow)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from accounts.selectors import seats_in_use
from oauth import grants
from oauth.models import Grant
from tests.factories import DeveloperFactory
from tests.support.browser import CHROMIUM_ARGS, chromium_executable
from tests.support.mcp import structured, usage_written
from tests.support.oauth import OAuthServer, issue_token

pytestmark = pytest.mark.django_db(transaction=True)

CALLBACK = "http://127.0.0.1:33419/callback"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


@pytest.fixture
def chromium() -> str:
    return chromium_executable()


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None
        self.saved: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.saved.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class BrowserDeveloper:
    """What a developer does in the browser the MCP client opens: sign in with the emailed code, then Allow."""

    def __init__(self, server: OAuthServer, chromium: str, email: str) -> None:
        self.server, self.chromium, self.email = server, chromium, email
        self.callback: str | None = None
        self.pages: list[str] = []

    def sign_in_and_allow(self, authorization_url: str) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=self.chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(20_000)
                page.route("http://127.0.0.1:33419/**", self._capture)
                page.goto(authorization_url)
                assert "/account/sign-in/" in page.url
                page.fill("#id_email", self.email)
                page.click("#email-form input[type=submit]")
                page.wait_for_url("**/account/sign-in/code/**")
                page.fill("#id_code", self.server.latest_code(self.email))
                page.click("#code-form input[type=submit]")
                page.wait_for_selector("#allow")
                self.pages.append(page.content())
                page.click("#allow")
                deadline = time.monotonic() + 20
                while self.callback is None and time.monotonic() < deadline:
                    page.wait_for_timeout(100)
            finally:
                browser.close()

    def _capture(self, route, request) -> None:
        self.callback = request.url
        route.fulfill(status=200, body="You can close this window.")


def test_mcp_client_signs_in_with_oauth_uses_tools_refreshes_and_is_signed_out_by_staff(oauth_server, chromium):
    developer = DeveloperFactory(email="ada@e2e.test")
    browser = BrowserDeveloper(oauth_server, chromium, developer.email)
    storage = MemoryStorage()

    async def redirect_handler(url: str) -> None:
        await anyio.to_thread.run_sync(browser.sign_in_and_allow, url)

    async def callback_handler() -> AuthorizationCodeResult:
        assert browser.callback is not None, "the browser never came back to the client"
        query = parse_qs(urlsplit(browser.callback).query)
        return AuthorizationCodeResult(
            code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
        )

    provider = OAuthClientProvider(
        server_url=oauth_server.url,
        client_metadata=OAuthClientMetadata(
            client_name="E2E MCP client",
            redirect_uris=[AnyUrl(CALLBACK)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )

    async def calls() -> tuple[set[str], dict, dict]:
        async with httpx2.AsyncClient(auth=provider, timeout=60) as http:
            async with Client(streamable_http_client(oauth_server.url, http_client=http)) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                me = structured(await client.call_tool("whoami", {}))
                used = structured(await client.call_tool("usage", {}))
                return tools, me, used

    tools, me, used = anyio.run(calls)
    assert {"whoami", "usage"} <= tools
    assert me["developer_id"] == str(developer.pk)
    assert me["credential"] == "oauth"
    assert me["oauth_client"] == "E2E MCP client"
    assert used["developer_calls"] == 1  # the whoami call, metered like a key's
    usage_written(2)
    consent = browser.pages[0]
    assert "E2E MCP client" in consent and "unverified" in consent and developer.organization.name in consent

    grant = Grant.objects.get(developer=developer)
    assert grant.client.name == "E2E MCP client"
    assert seats_in_use(developer.organization) == 1

    # Refresh: the client's access token is due, so it uses its refresh token (rotated) and goes on.
    first = storage.tokens
    provider.context.token_expiry_time = time.time() - 1

    async def after_refresh() -> dict:
        async with httpx2.AsyncClient(auth=provider, timeout=60) as http:
            async with Client(streamable_http_client(oauth_server.url, http_client=http)) as client:
                return structured(await client.call_tool("whoami", {}))

    assert anyio.run(after_refresh)["credential"] == "oauth"
    assert storage.tokens.access_token != first.access_token
    assert storage.tokens.refresh_token != first.refresh_token
    token = storage.tokens.access_token

    # Staff revoke the grant: the next call with the token is refused within a second.
    def post() -> httpx2.Response:
        return httpx2.post(
            oauth_server.url, json=TOOLS_LIST, headers={**ACCEPT, "Authorization": f"Bearer {token}"}, timeout=10
        )

    assert post().status_code == 200
    grants.revoke_grant(grant=Grant.objects.get(pk=grant.pk))
    started = time.monotonic()
    while (response := post()).status_code == 200:
        assert time.monotonic() - started < 1.5, "still served after the grant was revoked"
        time.sleep(0.05)
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]
    assert response.json()["error"]["data"]["code"] == "invalid_key"


def test_the_same_client_on_the_key_only_url_with_x_api_key(oauth_server):
    developer = DeveloperFactory()

    async def calls() -> dict:
        headers = {"X-API-Key": developer.plain_key}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            async with Client(streamable_http_client(oauth_server.base + "/mcp/key", http_client=http)) as client:
                return structured(await client.call_tool("whoami", {}))

    me = anyio.run(calls)
    assert me["credential"] == "api_key" and me["oauth_client"] is None
    assert me["developer_id"] == str(developer.pk)


def test_401s_offer_oauth_discovery_at_mcp_and_not_at_the_key_only_url(oauth_server):
    at_mcp = httpx2.post(oauth_server.url, json=TOOLS_LIST, headers=ACCEPT, timeout=10)
    assert at_mcp.status_code == 401
    challenge = at_mcp.headers["www-authenticate"]
    assert 'realm="hotcross"' in challenge
    assert f'resource_metadata="{oauth_server.base}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'scope="mcp"' in challenge  # the scope to ask for (MCP authorization: SHOULD), issue 26 item 14
    assert "Authorization: Bearer" in at_mcp.json()["error"]["message"]  # the human hint
    metadata = httpx2.get(f"{oauth_server.base}/.well-known/oauth-protected-resource/mcp", timeout=10).json()
    assert metadata["resource"] == oauth_server.url

    at_key = httpx2.post(oauth_server.base + "/mcp/key", json=TOOLS_LIST, headers=ACCEPT, timeout=10)
    assert at_key.status_code == 401
    assert "resource_metadata" not in at_key.headers["www-authenticate"]
    assert "scope=" not in at_key.headers["www-authenticate"]  # no OAuth at the key-only URL
    assert (
        httpx2.get(f"{oauth_server.base}/.well-known/oauth-protected-resource/mcp/key", timeout=10).status_code == 404
    )


def test_an_oauth_token_is_not_accepted_at_the_key_only_url(oauth_server):
    developer = DeveloperFactory()
    token = issue_token(developer, oauth_server.url)
    ok = httpx2.post(oauth_server.url, json=TOOLS_LIST, headers={**ACCEPT, "Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    refused = httpx2.post(
        oauth_server.base + "/mcp/key", json=TOOLS_LIST, headers={**ACCEPT, "Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401


def test_x_api_key_and_authorization_together_are_refused(oauth_server):
    developer = DeveloperFactory()
    headers = {**ACCEPT, "X-API-Key": developer.plain_key, "Authorization": f"Bearer {developer.plain_key}"}
    response = httpx2.post(oauth_server.url, json=TOOLS_LIST, headers=headers, timeout=10)
    assert response.status_code == 401
    assert "More than one credential" in response.json()["error"]["message"]
