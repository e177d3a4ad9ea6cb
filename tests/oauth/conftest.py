"""Helpers for the OAuth tests: a registered public client, PKCE, and the authorization code flow through Django's
test client (sign in with the developer's key, allow on the consent page, exchange the code)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client

REDIRECT = "http://127.0.0.1:33418/callback"
RESOURCE = "http://testserver/mcp"


@pytest.fixture(autouse=True)
def _oauth_settings(settings):
    settings.HOTCROSS_PUBLIC_URL = "http://testserver"
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": "http://testserver"}
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    from django.core.cache import cache

    cache.clear()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(client: Client, **overrides) -> dict:
    body = {
        "client_name": "Test MCP client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **overrides,
    }
    response = client.post("/oauth/register/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def sign_in_with_key(client: Client, key: str, next_url: str = ""):
    return client.post("/account/sign-in/", {"key": key, "next": next_url})


@dataclass
class Flow:
    client_id: str
    verifier: str
    challenge: str
    state: str

    def authorize_url(self, **extra: str) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT,
            "scope": "mcp",
            "state": self.state,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            "resource": RESOURCE,
            **extra,
        }
        return "/oauth/authorize/?" + urlencode(params)


def new_flow(client_id: str) -> Flow:
    verifier, challenge = pkce()
    return Flow(client_id, verifier, challenge, secrets.token_urlsafe(8))


def allow(browser: Client, flow: Flow, **extra: str) -> str:
    """Open the consent page as the signed-in developer and press Allow; the authorization code."""
    page = browser.get(flow.authorize_url(**extra))
    assert page.status_code == 200, page.content
    form = page.context["form"]
    data = {name: form[name].value() or "" for name in form.fields if name != "allow"}
    data["allow"] = "Allow"
    response = browser.post(flow.authorize_url(**extra), data)
    assert response.status_code == 302, response.content
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query.get("state") == [flow.state]
    return query["code"][0]


def exchange(client: Client, flow: Flow, code: str, verifier: str | None = None, **extra: str):
    return client.post(
        "/oauth/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": flow.client_id,
            "code_verifier": verifier or flow.verifier,
            **extra,
        },
    )


def tokens_for(developer, *, client: Client | None = None) -> tuple[dict, Flow]:
    """Register a client, sign `developer` in with their key, allow, exchange: the token response and the flow."""
    client = client or Client()
    registered = register(client)
    flow = new_flow(registered["client_id"])
    assert sign_in_with_key(client, developer.plain_key).status_code == 302
    code = allow(client, flow)
    response = exchange(client, flow, code)
    assert response.status_code == 200, response.content
    return response.json(), flow
