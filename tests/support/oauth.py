"""OAuth for MCP clients as tests drive it: the authorization code flow through Django's test client (register a
public client, PKCE, sign in with the developer's key, allow on the consent page, exchange the code), and a real
uvicorn whose public URL (`HOTCROSS_PUBLIC_URL`, the issuer and the `/mcp` resource) is the address it listens on,
whose mail goes to files (`filemail://`, read back by the tests), and which allows Client ID Metadata Documents on
127.0.0.1 (`run_oauth_server`; one for the session: the `oauth_server` fixture)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client

from tests.support.mcp import KEY_MEMORY_SECONDS, server_env
from tests.support.servers import RunningServer, uvicorn

REDIRECT = "http://127.0.0.1:33418/callback"
RESOURCE = "http://testserver/mcp"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(client: Client, **overrides) -> dict:
    response = post_registration(client, **overrides)
    assert response.status_code == 201, response.content
    return response.json()


def post_registration(client: Client, **overrides):
    """POST /oauth/register/ with a public client's metadata and `overrides` (a None value leaves the field out)."""
    body = {
        "client_name": "Test MCP client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **overrides,
    }
    body = {name: value for name, value in body.items() if value is not None}
    return client.post("/oauth/register/", data=json.dumps(body), content_type="application/json")


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
        return "/oauth/authorize/?" + urlencode(params, doseq=True)  # a list: the parameter repeated


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


def allowed_code(developer, *, client: Client | None = None) -> tuple[Client, Flow, str]:
    """Register a client, sign `developer` in with their key, allow: the browser, the flow and the authorization
    code, not exchanged yet."""
    client = client or Client()
    flow = new_flow(register(client)["client_id"])
    assert sign_in_with_key(client, developer.plain_key).status_code == 302
    return client, flow, allow(client, flow)


def tokens_for(developer, *, client: Client | None = None) -> tuple[dict, Flow]:
    """`allowed_code`, then exchange: the token response and the flow."""
    client, flow, code = allowed_code(developer, client=client)
    response = exchange(client, flow, code)
    assert response.status_code == 200, response.content
    return response.json(), flow


# --- a real server ---------------------------------------------------------------------------------------------


@dataclass
class OAuthServer(RunningServer):
    mail_dir: Path = Path()

    def latest_code(self, email: str, timeout: float = 10) -> str:
        """The sign-in code in the newest mail to `email`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in sorted(self.mail_dir.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True):
                text = path.read_text(errors="replace")
                if f"To: {email}" in text:
                    match = re.findall(r"sign-in code is (\d{6})", text)
                    if match:
                        return match[-1]
            time.sleep(0.1)
        raise AssertionError(f"no sign-in mail to {email} in {self.mail_dir}")


@contextlib.contextmanager
def run_oauth_server(log_dir: Path, **env: str) -> Iterator[OAuthServer]:
    mail_dir = Path(tempfile.mkdtemp(prefix="mail-", dir=log_dir))

    def environment(base: str) -> dict[str, str]:
        return server_env(
            HOTCROSS_PUBLIC_URL=base,
            EMAIL_URL=f"filemail:///{mail_dir}",  # django-environ drops one slash: filemail:////abs/path
            HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK="true",
            **env,
        )

    def server(base: str, process: subprocess.Popen, log_path: Path) -> OAuthServer:
        return OAuthServer(base, process, log_path, mail_dir=mail_dir)

    with uvicorn(log_dir, environment, server=server) as running:
        yield running


@pytest.fixture(scope="session")
def oauth_server(django_db_setup, tmp_path_factory) -> Iterator[OAuthServer]:
    """One `run_oauth_server` for the session's tests (each brings its own developers and clients), remembering token
    and key checks for `KEY_MEMORY_SECONDS`: a revocation reaches it that soon."""

    log_dir = tmp_path_factory.mktemp("oauth-server")
    with run_oauth_server(log_dir, HOTCROSS_KEY_CACHE_SECONDS=str(KEY_MEMORY_SECONDS)) as server:
        yield server


def issue_token(developer, resource: str, *, client_name: str = "Direct client") -> str:
    """An access token for `developer`, bound to `resource`, as the token endpoint would store it (checksum only)."""
    import datetime
    import secrets

    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model, get_application_model

    from oauth import grants

    client = get_application_model().objects.create(
        name=client_name,
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1:9/cb",
    )
    grants.record_grant(developer=developer, client=client)
    token = secrets.token_urlsafe(30)
    get_access_token_model().objects.create(
        user=grants.shadow_user(developer=developer),
        application=client,
        token=token,
        expires=timezone.now() + datetime.timedelta(hours=1),
        scope="mcp",
        resource=[resource],
    )
    return token
