"""What this authorization server issues and registers: tokens for its own MCP resource only (RFC 8707: anything else
is invalid_target, at the authorization endpoint, the code exchange and refresh), and registrations (RFC 7591) of
public clients using the authorization code grant only, refused with the RFC's errors and nothing stored."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from oauth.authentication import authenticate_token
from oauth.models import Client as OAuthClient
from tests.factories import DeveloperFactory
from tests.support.oauth import (
    REDIRECT,
    RESOURCE,
    allow,
    exchange,
    new_flow,
    post_registration,
    register,
    sign_in_with_key,
    tokens_for,
)

pytestmark = pytest.mark.django_db

EVIL = "https://evil.example/mcp"


def _user_tokens():
    return get_access_token_model().objects.filter(user__isnull=False)


def _signed_in_flow() -> tuple[Client, object]:
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    assert sign_in_with_key(browser, DeveloperFactory().plain_key).status_code == 302
    return browser, flow


# --- RFC 8707: this server's MCP resource only ---------------------------------------------------------------------


@pytest.mark.parametrize("resource", [[RESOURCE, EVIL], [EVIL], ["http://testserver/mcp?x=1"]], ids=str)
def test_the_authorization_endpoint_refuses_other_resources_with_invalid_target(resource):
    browser, flow = _signed_in_flow()
    response = browser.get(flow.authorize_url(resource=resource))
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["error"] == ["invalid_target"]
    assert query["state"] == [flow.state]
    assert RESOURCE in query["error_description"][0]
    # Allowing anyway (the consent form's hidden field tampered with) gives no code either.
    data = {"client_id": flow.client_id, "redirect_uri": REDIRECT, "response_type": "code", "state": flow.state}
    data |= {"scope": "mcp", "code_challenge": flow.challenge, "code_challenge_method": "S256"}
    data |= {"resource": " ".join(resource), "allow": "Allow"}
    posted = browser.post(flow.authorize_url(), data)
    assert parse_qs(urlsplit(posted["Location"]).query)["error"] == ["invalid_target"]
    assert not get_grant_model().objects.exists()


@pytest.mark.parametrize("resource", [[RESOURCE, EVIL], [EVIL], EVIL], ids=str)
def test_the_code_exchange_refuses_other_resources_with_invalid_target(resource):
    browser, flow = _signed_in_flow()
    code = allow(browser, flow, resource=[])  # no resource asked for at the authorization endpoint
    response = exchange(browser, flow, code, resource=resource)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    assert not _user_tokens().exists()
    # The code was not spent by the refusal: asking for this server's resource works.
    response = exchange(browser, flow, code, resource=RESOURCE)
    assert response.status_code == 200, response.content
    assert _user_tokens().get().resource == [RESOURCE]


@pytest.mark.parametrize("spelling", ["http://testserver/mcp/", "HTTP://TESTSERVER:80/mcp", RESOURCE])
def test_this_servers_resource_in_any_spelling_is_stored_as_one_audience(spelling):
    browser, flow = _signed_in_flow()
    code = allow(browser, flow, resource=[spelling, RESOURCE])
    response = exchange(browser, flow, code)
    assert response.status_code == 200, response.content
    assert _user_tokens().get().resource == [RESOURCE]
    assert authenticate_token(response.json()["access_token"])


def _refresh(refresh_token: str, client_id: str, **extra):
    return Client().post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **extra},
    )


@pytest.mark.parametrize("resource", [[RESOURCE, EVIL], EVIL], ids=str)
def test_refresh_refuses_other_resources_with_invalid_target(resource):
    tokens, flow = tokens_for(DeveloperFactory())
    response = _refresh(tokens["refresh_token"], flow.client_id, resource=resource)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    assert _user_tokens().count() == 1
    assert _refresh(tokens["refresh_token"], flow.client_id).status_code == 200


def test_a_refresh_token_issued_with_a_second_audience_before_the_rule_is_refused():
    tokens, flow = tokens_for(DeveloperFactory())
    get_refresh_token_model().objects.update(resource=[RESOURCE, EVIL])
    response = _refresh(tokens["refresh_token"], flow.client_id)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


# --- RFC 7591: public clients with the authorization code grant only --------------------------------------------


def test_a_registration_echoes_what_it_registered():
    answer = register(Client())
    assert answer["token_endpoint_auth_method"] == "none"
    assert answer["grant_types"] == ["authorization_code", "refresh_token"]
    assert answer["response_types"] == ["code"]
    assert answer["redirect_uris"] == [REDIRECT]
    assert "client_secret" not in answer and "client_secret_expires_at" not in answer
    stored = OAuthClient.objects.get(client_id=answer["client_id"])
    assert stored.client_type == OAuthClient.CLIENT_PUBLIC
    assert stored.registration_source == OAuthClient.RegistrationSource.DCR


def test_a_registration_without_an_auth_method_is_a_public_client():
    answer = register(Client(), token_endpoint_auth_method=None, response_types=None, grant_types=None)
    assert answer["token_endpoint_auth_method"] == "none"
    assert OAuthClient.objects.get(client_id=answer["client_id"]).client_type == OAuthClient.CLIENT_PUBLIC


@pytest.mark.parametrize(
    "overrides",
    [
        {"grant_types": ["client_credentials"]},
        {"grant_types": ["password"]},
        {"grant_types": ["implicit"], "response_types": ["token"]},
        {"grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]},
        {"grant_types": ["authorization_code", "client_credentials"]},
        {"grant_types": ["refresh_token"]},
        {"grant_types": "authorization_code"},
        {"response_types": ["token"]},
        {"response_types": ["code", "token"]},
        {"token_endpoint_auth_method": "client_secret_basic"},
        {"token_endpoint_auth_method": "client_secret_post"},
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"client_secret": "chosen-by-the-client"},
        {"client_name": "NUL\x00name"},
        {"client_name": "line\nbreak"},
        {"client_name": "bidi \u202eevil"},
        {"client_name": "x" * 256},
        {"client_name": ["a list"]},
    ],
    ids=lambda overrides: "-".join(f"{k}={str(v)[:16]!r}" for k, v in overrides.items()),
)
def test_registrations_this_server_does_not_take_are_invalid_client_metadata(overrides):
    response = post_registration(Client(), **overrides)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"
    assert response.json()["error_description"]
    assert not OAuthClient.objects.exists()


@pytest.mark.parametrize(
    "redirect_uris",
    [
        ["http://127.0.0.1:33418/cb\x00"],
        ["http://127.0.0.1:33418/cb\r\nX: y"],
        ["https://app.example/cb https://evil.example/cb"],
        [],
        "https://app.example/cb",
        [42],
        ["https://app.example/" + "x" * 2000],
        [REDIRECT] * 11,
    ],
    ids=lambda uris: repr(uris)[:24],
)
def test_bad_redirect_uris_are_invalid_redirect_uri(redirect_uris):
    response = post_registration(Client(), redirect_uris=redirect_uris)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri"
    assert response.json()["error_description"]
    assert not OAuthClient.objects.exists()


def test_a_registered_client_cannot_update_itself_into_a_confidential_or_other_grant_client():
    answer = register(Client())
    body = {
        "client_name": "Now confidential",
        "redirect_uris": [REDIRECT],
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    response = Client().put(
        answer["registration_client_uri"].removeprefix("http://testserver"),
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {answer['registration_access_token']}"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"
    stored = OAuthClient.objects.get(client_id=answer["client_id"])
    assert (stored.client_type, stored.name) == (OAuthClient.CLIENT_PUBLIC, "Test MCP client")


def test_a_body_nested_deeper_than_the_parser_goes_is_invalid_client_metadata():
    deep = b"[" * 100_000 + b"]" * 100_000
    refused = Client(raise_request_exception=False).post("/oauth/register/", deep, content_type="application/json")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client_metadata"
    answer = register(Client())
    updated = Client(raise_request_exception=False).put(
        answer["registration_client_uri"].removeprefix("http://testserver"),
        data=deep,
        content_type="application/json",
        headers={"Authorization": f"Bearer {answer['registration_access_token']}"},
    )
    assert updated.status_code == 400 and updated.json()["error"] == "invalid_client_metadata"
    assert OAuthClient.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "/oauth/authorize/", {"response_type": "code", "client_id": "a\x00b"}),
        ("post", "/oauth/token/", {"grant_type": "authorization_code", "client_id": "a\x00b", "code": "x"}),
        ("post", "/oauth/revoke/", {"token": "x", "client_id": "\x00"}),
    ],
    ids=["authorize", "token", "revoke"],
)
def test_a_nul_in_a_parameter_is_invalid_request_not_a_database_error(method, path, data):
    """PostgreSQL refuses NUL in text: before the fix, a DataError (500) wherever the value reached a query."""
    browser = Client(raise_request_exception=False)
    if method == "get":
        response = browser.get(path, data)
    else:
        response = browser.post(path, urlencode(data), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
