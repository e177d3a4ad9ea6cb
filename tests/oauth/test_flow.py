"""The authorization server through Django's test client: discovery, registration, authorization code with PKCE,
tokens, refresh, revocation, and the token check's refusals (the same rules as the key check)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from accounts import services
from accounts.exceptions import KeyRefused
from accounts.selectors import seats_in_use
from oauth.authentication import authenticate_token, token_checksum
from oauth.models import Grant
from tests.factories import DeveloperFactory
from tests.support.oauth import REDIRECT, allow, exchange, new_flow, register, sign_in_with_key, tokens_for

pytestmark = pytest.mark.django_db


def _user_tokens():
    """Developers' access tokens (registration leaves a registration access token with no user, RFC 7592)."""
    return get_access_token_model().objects.filter(user__isnull=False)


def test_authorization_server_metadata_says_what_mcp_clients_need():
    metadata = Client().get("/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == "http://testserver"
    assert metadata["authorization_endpoint"] == "http://testserver/oauth/authorize/"
    assert metadata["token_endpoint"] == "http://testserver/oauth/token/"
    assert metadata["registration_endpoint"] == "http://testserver/oauth/register/"
    assert metadata["revocation_endpoint"] == "http://testserver/oauth/revoke/"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert set(metadata["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert "none" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["client_id_metadata_document_supported"] is True


def test_protected_resource_metadata_for_mcp():
    metadata = Client().get("/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["resource"] == "http://testserver/mcp"
    assert metadata["authorization_servers"] == ["http://testserver"]
    assert metadata["bearer_methods_supported"] == ["header"]
    assert metadata["scopes_supported"] == ["mcp"]


def test_the_key_only_url_has_no_protected_resource_metadata():
    assert Client().get("/.well-known/oauth-protected-resource/mcp/key").status_code == 404
    assert Client().get("/.well-known/oauth-protected-resource").status_code == 404


@pytest.mark.parametrize(
    "uri",
    ["http://example.com/cb", "ftp://127.0.0.1/cb", "javascript:alert(1)", "http://10.0.0.1/cb", "https://x/cb#frag"],
)
def test_registration_refuses_redirect_uris_that_are_not_https_or_loopback(uri):
    from oauth.models import Client as OAuthClient

    response = Client().post(
        "/oauth/register/",
        data=json.dumps({"redirect_uris": [uri], "token_endpoint_auth_method": "none"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri" or response.json()["error"] == "invalid_client_metadata"
    assert not OAuthClient.objects.exists()


@pytest.mark.parametrize(
    "uri", ["https://app.example.com/cb", "http://127.0.0.1:5555/cb", "http://localhost:9/cb", "http://[::1]:7/cb"]
)
def test_registration_takes_https_and_loopback_redirect_uris(uri):
    registered = register(Client(), redirect_uris=[uri])
    assert registered["redirect_uris"] == [uri]
    assert "client_secret" not in registered or not registered["client_secret"]


def test_malformed_registration_is_a_400_with_the_rfc_error():
    response = Client().post("/oauth/register/", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


def test_registration_is_rate_limited_per_address(settings):
    settings.HOTCROSS_OAUTH_REGISTRATIONS_PER_HOUR = 2
    client = Client()
    register(client)
    register(client)
    response = client.post(
        "/oauth/register/",
        data=json.dumps({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
        content_type="application/json",
    )
    assert response.status_code == 429
    assert response.json()["error"]
    other = Client(REMOTE_ADDR="127.0.0.9")
    register(other)


def test_the_whole_flow_gives_a_token_bound_to_mcp_for_the_developer():
    developer = DeveloperFactory()
    tokens, _flow = tokens_for(developer)
    assert tokens["token_type"] == "Bearer"
    assert 3500 <= tokens["expires_in"] <= 3600
    caller = authenticate_token(tokens["access_token"])
    assert caller.principal.developer_id == developer.pk
    assert caller.client_name == "Test MCP client"
    stored = _user_tokens().get()
    assert stored.resource == ["http://testserver/mcp"]
    assert stored.token == ""  # only the checksum is stored
    assert stored.token_checksum == token_checksum(tokens["access_token"])
    assert Grant.objects.filter(developer=developer, revoked_at=None).count() == 1


def test_consent_page_names_client_developer_and_organization_and_flags_self_registered():
    developer = DeveloperFactory()
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    sign_in_with_key(browser, developer.plain_key)
    page = browser.get(flow.authorize_url()).content.decode()
    assert "Test MCP client" in page
    assert "unverified" in page
    assert "127.0.0.1:33418" in page
    assert developer.email in page
    assert developer.organization.name in page
    # Issue 31: what the client may do was said twice (the scope's description, then the same in other words).
    assert page.count("MCP tools as you") == 1 and "its calls count as your usage" in page


def test_deny_returns_access_denied_and_creates_nothing():
    developer = DeveloperFactory()
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    sign_in_with_key(browser, developer.plain_key)
    page = browser.get(flow.authorize_url())
    form = page.context["form"]
    data = {name: form[name].value() or "" for name in form.fields if name != "allow"}
    response = browser.post(flow.authorize_url(), data)
    assert response.status_code == 302
    assert "error=access_denied" in response["Location"]
    assert not Grant.objects.exists()
    assert not _user_tokens().exists()


def test_not_signed_in_goes_to_sign_in_and_comes_back():
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    response = browser.get(flow.authorize_url())
    assert response.status_code == 302
    assert response["Location"].startswith("/account/sign-in/?next=")


def test_a_staff_session_does_not_count_as_a_developer(admin_client):
    flow = new_flow(register(admin_client)["client_id"])
    response = admin_client.get(flow.authorize_url())
    assert response.status_code == 302
    assert response["Location"].startswith("/account/sign-in/")


def test_plain_pkce_is_refused():
    developer = DeveloperFactory()
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    sign_in_with_key(browser, developer.plain_key)
    url = flow.authorize_url(code_challenge=flow.verifier, code_challenge_method="plain")
    page = browser.get(url)
    form = page.context["form"]
    data = {name: form[name].value() or "" for name in form.fields if name != "allow"}
    response = browser.post(url, {**data, "allow": "Allow"})
    assert response.status_code == 302
    assert "error=invalid_request" in response["Location"] and "code=" not in response["Location"]
    from oauth2_provider.models import get_grant_model

    assert not get_grant_model().objects.exists()


def test_no_pkce_is_refused():
    developer = DeveloperFactory()
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    sign_in_with_key(browser, developer.plain_key)
    url = flow.authorize_url().replace(f"code_challenge={flow.challenge}", "")
    response = browser.get(url)
    assert response.status_code == 400
    assert "code_challenge" in response.content.decode() or "invalid_request" in response.content.decode()


def test_wrong_pkce_verifier_is_refused_and_issues_nothing():
    developer = DeveloperFactory()
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    sign_in_with_key(browser, developer.plain_key)
    code = allow(browser, flow)
    response = exchange(browser, flow, code, verifier="x" * 50)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert not _user_tokens().exists()


def test_a_reused_code_is_refused_and_revokes_what_it_issued():
    developer = DeveloperFactory()
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    sign_in_with_key(browser, developer.plain_key)
    code = allow(browser, flow)
    first = exchange(browser, flow, code)
    assert first.status_code == 200
    token = first.json()["access_token"]
    assert authenticate_token(token)
    again = exchange(browser, flow, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    with pytest.raises(KeyRefused) as refused:
        authenticate_token(token)
    assert refused.value.code == KeyRefused.INVALID_KEY


def test_an_expired_code_is_refused(settings):
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import get_grant_model

    developer = DeveloperFactory()
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    sign_in_with_key(browser, developer.plain_key)
    code = allow(browser, flow)
    get_grant_model().objects.update(expires=timezone.now() - timedelta(seconds=1))
    response = exchange(browser, flow, code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert not _user_tokens().exists()


@pytest.mark.parametrize(
    "resource",
    [["https://other.example.com/api"], ["http://testserver/mcp", "https://evil.example/mcp"]],
    ids=["another", "a second audience"],
)
def test_a_token_for_another_resource_or_several_is_refused_on_mcp(resource):
    """Such tokens are no longer issued (tests/oauth/test_oauth_rules.py); one issued before is refused all the same."""
    developer = DeveloperFactory()
    tokens, _ = tokens_for(developer)
    _user_tokens().update(resource=resource)
    with pytest.raises(KeyRefused) as refused:
        authenticate_token(tokens["access_token"])
    assert "another resource" in refused.value.message


def test_refresh_rotates_and_the_old_refresh_token_is_refused():
    developer = DeveloperFactory()
    tokens, flow = tokens_for(developer)
    client = Client()
    refreshed = client.post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": flow.client_id},
    )
    assert refreshed.status_code == 200, refreshed.content
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert authenticate_token(new["access_token"]).principal.developer_id == developer.pk
    assert _user_tokens().get().resource == ["http://testserver/mcp"]
    replay = client.post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": flow.client_id},
    )
    assert replay.status_code == 400
    assert get_refresh_token_model().objects.filter(revoked=None).count() == 0  # reuse ends the family


def test_revocation_endpoint_ends_a_token():
    developer = DeveloperFactory()
    tokens, flow = tokens_for(developer)
    response = Client().post("/oauth/revoke/", {"token": tokens["access_token"], "client_id": flow.client_id})
    assert response.status_code == 200
    with pytest.raises(KeyRefused):
        authenticate_token(tokens["access_token"])


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda d: services.revoke_key(developer=d), KeyRefused.KEY_REVOKED),
        (lambda d: services.deactivate_developer(developer=d), KeyRefused.DEVELOPER_INACTIVE),
        (
            lambda d: services.set_status(organization=d.organization, status="canceled"),
            KeyRefused.SUBSCRIPTION_INACTIVE,
        ),
    ],
)
def test_an_existing_token_gets_the_key_checks_refusals(change, code):
    developer = DeveloperFactory()
    tokens, _ = tokens_for(developer)
    authenticate_token(tokens["access_token"])
    change(developer)
    with pytest.raises(KeyRefused) as refused:
        authenticate_token(tokens["access_token"])
    assert refused.value.code == code


def test_over_seat_developer_token_is_refused_with_seat_limit_exceeded():
    first = DeveloperFactory()
    second = DeveloperFactory(organization=first.organization)
    tokens, _ = tokens_for(second)
    services.set_seats(organization=first.organization, max_seats=1)
    with pytest.raises(KeyRefused) as refused:
        authenticate_token(tokens["access_token"])
    assert refused.value.code == KeyRefused.SEAT_LIMIT_EXCEEDED


def test_rotating_the_key_does_not_end_oauth_grants():
    developer = DeveloperFactory()
    tokens, _ = tokens_for(developer)
    services.rotate_key(developer=developer)
    assert authenticate_token(tokens["access_token"]).principal.developer_id == developer.pk


def test_a_key_and_two_grants_hold_one_seat():
    developer = DeveloperFactory()
    before = seats_in_use(developer.organization)
    tokens_for(developer)
    tokens_for(developer)
    assert Grant.objects.filter(developer=developer).count() == 2
    assert seats_in_use(developer.organization) == before == 1


def test_sign_out_of_every_client_ends_every_token():
    from oauth import grants

    developer = DeveloperFactory()
    one, _ = tokens_for(developer)
    two, _ = tokens_for(developer)
    assert grants.sign_out_everywhere(developer=developer) == 2
    for tokens in (one, two):
        with pytest.raises(KeyRefused):
            authenticate_token(tokens["access_token"])
    assert not get_refresh_token_model().objects.filter(revoked=None).exists()


def test_a_blocked_client_gets_no_token_and_loses_its_tokens():
    from oauth import grants
    from oauth.models import Client as OAuthClient

    developer = DeveloperFactory()
    tokens, flow = tokens_for(developer)
    client = OAuthClient.objects.get(client_id=flow.client_id)
    assert grants.block_client(client=client)
    with pytest.raises(KeyRefused):
        authenticate_token(tokens["access_token"])
    browser = Client()
    sign_in_with_key(browser, developer.plain_key)
    response = browser.get(new_flow(flow.client_id).authorize_url())
    assert response.status_code in (302, 400)
    assert "code=" not in response.get("Location", "")


@pytest.mark.parametrize("state", ["revoked", "inactive", "canceled", "over_seat"])
def test_a_refused_developer_cannot_sign_in_with_the_key_checks_message(state):
    first = DeveloperFactory()
    developer = DeveloperFactory(organization=first.organization)
    if state == "revoked":
        services.revoke_key(developer=developer)
    elif state == "inactive":
        services.deactivate_developer(developer=developer)
    elif state == "canceled":
        services.set_status(organization=developer.organization, status="canceled")
    else:
        services.set_seats(organization=developer.organization, max_seats=1)
    response = sign_in_with_key(Client(), developer.plain_key)
    assert response.status_code == 400
    expected = {
        "revoked": "key_revoked",
        "inactive": "developer_inactive",
        "canceled": "subscription_inactive",
        "over_seat": "seat_limit_exceeded",
    }[state]
    assert expected in response.content.decode()


def test_a_grant_records_its_last_use():
    developer = DeveloperFactory()
    tokens, _ = tokens_for(developer)
    assert Grant.objects.get().last_used_at is None
    authenticate_token(tokens["access_token"])
    assert Grant.objects.get().last_used_at is not None


def test_a_developer_refused_after_signing_in_gets_no_consent_page_and_the_reason():
    developer = DeveloperFactory()
    browser = Client()
    flow = new_flow(register(browser)["client_id"])
    sign_in_with_key(browser, developer.plain_key)
    services.set_status(organization=developer.organization, status="canceled")
    response = browser.get(flow.authorize_url())
    assert response.status_code == 403
    assert "subscription_inactive" in response.content.decode()
    assert not Grant.objects.exists()


def test_token_checks_are_counted_in_metrics_by_outcome() -> None:
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("hotcross_token_checks_total", {"outcome": outcome}) or 0.0

    developer = DeveloperFactory()
    tokens, _flow = tokens_for(developer)
    ok, invalid = count("ok"), count(KeyRefused.INVALID_KEY)
    authenticate_token(tokens["access_token"])
    with pytest.raises(KeyRefused):
        authenticate_token("not-a-token")
    assert count("ok") == ok + 1
    assert count(KeyRefused.INVALID_KEY) == invalid + 1


def test_a_cold_token_check_is_one_query_that_skips_the_shadow_user(django_assert_num_queries):
    from accounts import check_cache

    developer = DeveloperFactory()
    tokens, _flow = tokens_for(developer)
    authenticate_token(tokens["access_token"])  # the client's name is remembered, the grant's last use written
    check_cache.clear()
    with django_assert_num_queries(1) as queries:
        caller = authenticate_token(tokens["access_token"])
    assert "auth_user" not in queries.captured_queries[0]["sql"]
    assert caller.principal.developer_id == developer.pk
    assert caller.principal.organization_name == developer.organization.name
    assert caller.client_name == "Test MCP client"


def test_an_expired_access_token_is_refused_on_a_cold_check():
    from datetime import timedelta

    from django.utils import timezone

    from accounts import check_cache

    developer = DeveloperFactory()
    tokens, _flow = tokens_for(developer)
    _user_tokens().update(expires=timezone.now() - timedelta(seconds=1))
    check_cache.clear()
    with pytest.raises(KeyRefused) as refused:
        authenticate_token(tokens["access_token"])
    assert "expired" in refused.value.message
