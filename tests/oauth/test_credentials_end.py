"""Every credential ends when it should (issue 26): a web session, an authorization code not exchanged yet and the
OAuth tokens of a developer end with every staff action that ends the developer's access; rotating one's own key
needs a recent sign-in and a confirmation; a key's expiry ends the developer's access by any credential."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.authentication import authenticate_key
from accounts.exceptions import KeyRefused
from accounts.models import Developer
from oauth import grants, views
from oauth.authentication import authenticate_token
from oauth.models import Grant
from tests.factories import DeveloperFactory
from tests.support.oauth import allow, allowed_code, exchange, new_flow, sign_in_with_key, tokens_for

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/developer/"


def signed_in(developer) -> Client:
    browser = Client()
    assert sign_in_with_key(browser, developer.plain_key).status_code == 302
    assert browser.get("/account/").status_code == 200
    return browser


def admin_rotate(admin_client, developer) -> None:
    page = admin_client.post(
        CHANGELIST, {"action": "rotate_keys", "_selected_action": [str(developer.pk)], "index": "0"}
    )
    version = page.context["hidden"][0]
    data = {"action": "rotate_keys", "_selected_action": [str(developer.pk)], "post": "yes", version[0]: version[1]}
    assert admin_client.post(CHANGELIST, data).status_code == 200


def test_the_lost_laptop_steps_as_printed_end_the_web_session_the_codes_and_the_tokens(admin_client):
    """docs/clients.md, "A lost laptop": "Sign out of every OAuth client", then "Rotate key", in the admin."""
    developer = DeveloperFactory()
    laptop = signed_in(developer)
    tokens, flow = tokens_for(developer)
    client, code_flow, code = allowed_code(developer)

    admin_client.post(CHANGELIST, {"action": "sign_out_everywhere", "_selected_action": [developer.pk]})
    admin_rotate(admin_client, developer)

    assert laptop.get("/account/").status_code == 302  # signed out
    rotate = laptop.post("/account/rotate-key/", {"key_version": Developer.objects.get().key_version})
    assert rotate.status_code == 302 and rotate["Location"].startswith("/account/sign-in/")
    with pytest.raises(KeyRefused) as refused:
        authenticate_key(developer.plain_key)
    assert refused.value.code == KeyRefused.KEY_ROTATED
    with pytest.raises(KeyRefused):
        authenticate_token(tokens["access_token"])
    refresh = Client().post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": flow.client_id},
    )
    assert refresh.status_code == 400
    exchanged = exchange(client, code_flow, code)
    assert exchanged.status_code == 400 and exchanged.json()["error"] == "invalid_grant"
    # the consent page asks the laptop to sign in again instead of re-authorizing
    consent = laptop.get(new_flow(flow.client_id).authorize_url())
    assert consent.status_code == 302 and consent["Location"].startswith("/account/sign-in/")


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(lambda d: services.revoke_key(developer=d), id="revoke"),
        pytest.param(lambda d: services.rotate_key(developer=d), id="rotate"),
        pytest.param(lambda d: services.deactivate_developer(developer=d), id="deactivate"),
        pytest.param(lambda d: grants.sign_out_everywhere(developer=d), id="sign-out-everywhere"),
    ],
)
def test_every_action_that_ends_access_ends_web_sessions_and_unused_codes(end):
    developer = DeveloperFactory()
    browser = signed_in(developer)
    client, flow, code = allowed_code(developer)
    end(Developer.objects.get(pk=developer.pk))
    assert browser.get("/account/").status_code == 302
    assert exchange(client, flow, code).json()["error"] == "invalid_grant"
    assert LogEntry.objects.filter(
        change_message__contains="Web sessions and unused authorization codes ended"
    ).exists()


def test_a_code_issued_before_its_grant_was_revoked_cannot_be_exchanged_after():
    developer = DeveloperFactory()
    _, flow = tokens_for(developer)
    client = Client()
    assert sign_in_with_key(client, developer.plain_key).status_code == 302
    second = new_flow(flow.client_id)
    code = allow(client, second)
    grants.revoke_grant(grant=Grant.objects.get(developer=developer))
    response = exchange(client, second, code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_rotating_ones_own_key_asks_for_a_confirmation_and_a_recent_sign_in():
    developer = DeveloperFactory()
    tokens, _ = tokens_for(developer)
    browser = signed_in(developer)
    other_session = signed_in(developer)
    version = Developer.objects.get().key_version

    one_click = browser.post("/account/", {"rotate_key": "1", "key_version": version})
    assert one_click.status_code == 302 and one_click["Location"] == "/account/rotate-key/"
    assert Developer.objects.get().key_version == version  # nothing rotated on one click

    page = browser.get("/account/rotate-key/")
    assert page.status_code == 200 and 'name="grace"' in page.content.decode()

    session = browser.session
    session[views.SESSION_SIGNED_IN_AT] -= views.RECENT_SIGN_IN_SECONDS + 1
    session.save()
    stale = browser.post("/account/rotate-key/", {"key_version": version})
    assert stale.status_code == 302 and stale["Location"].startswith("/account/sign-in/?next=")
    assert Developer.objects.get().key_version == version

    assert sign_in_with_key(browser, developer.plain_key).status_code == 302
    rotated = browser.post("/account/rotate-key/", {"key_version": version, "grace": "1h"})
    new_key = rotated.context["new_key"]
    assert rotated.status_code == 200 and new_key in rotated.content.decode()
    assert rotated["Cache-Control"] == "no-store"
    assert "keeps working until" in rotated.content.decode()
    assert authenticate_key(developer.plain_key).developer_id == developer.pk  # the grace period
    assert authenticate_key(new_key).developer_id == developer.pk
    assert authenticate_token(tokens["access_token"]).principal.developer_id == developer.pk  # OAuth untouched
    assert browser.get("/account/").status_code == 200  # this session stays
    assert other_session.get("/account/").status_code == 302  # every other one ended
    replay = browser.post("/account/rotate-key/", {"key_version": version, "grace": "1h"})
    assert replay.status_code == 400 and "new_key" not in replay.context


def test_a_bad_grace_on_the_rotation_page_is_refused_and_rotates_nothing():
    developer = DeveloperFactory()
    browser = signed_in(developer)
    version = Developer.objects.get().key_version
    response = browser.post("/account/rotate-key/", {"key_version": version, "grace": "3 days"})
    assert response.status_code == 400 and "is not a grace period" in response.content.decode()
    assert Developer.objects.get().key_version == version


def test_an_expired_key_ends_oauth_tokens_sign_in_and_the_web_session():
    developer = DeveloperFactory()
    tokens, _ = tokens_for(developer)
    browser = signed_in(developer)
    services.set_key_expiry(developer=developer, expires_at=timezone.now() - datetime.timedelta(seconds=1))
    with pytest.raises(KeyRefused) as refused:
        authenticate_token(tokens["access_token"])
    assert refused.value.code == KeyRefused.KEY_EXPIRED
    page = browser.get("/account/")
    assert page.status_code == 403 and "key_expired" in page.content.decode()
    assert browser.get("/account/").status_code == 302  # the session ended
    from oauth import signin

    with pytest.raises(signin.SignInRefused):
        signin._require_standing(developer)


def test_rotating_keeps_an_expiry_still_ahead_and_says_so():
    developer = DeveloperFactory()
    ahead = timezone.now() + datetime.timedelta(days=30)
    services.set_key_expiry(developer=developer, expires_at=ahead)
    services.rotate_key(developer=developer)
    assert Developer.objects.get().api_key_expires_at == ahead
    assert LogEntry.objects.filter(change_message__contains="as the old one did").exists()


def test_rotating_drops_an_expiry_that_had_passed_and_says_so():
    developer = DeveloperFactory()
    services.set_key_expiry(developer=developer, expires_at=timezone.now() - datetime.timedelta(days=1))
    _, new_key = services.rotate_key(developer=developer)
    assert Developer.objects.get().api_key_expires_at is None
    assert authenticate_key(new_key).developer_id == developer.pk
    assert LogEntry.objects.filter(change_message__contains="had passed").exists()


def test_the_account_page_answers_a_malformed_grant_id_with_400():
    developer = DeveloperFactory()
    browser = signed_in(developer)
    response = browser.post("/account/", {"revoke_grant": "abc"})
    assert response.status_code == 400 and "not yours" in response.content.decode()


def test_the_oauth_client_admin_page_has_no_broken_view_on_site_link(admin_client):
    developer = DeveloperFactory()
    _, flow = tokens_for(developer)
    from oauth.models import Client as OAuthClient

    client = OAuthClient.objects.get(client_id=flow.client_id)
    page = admin_client.get(f"/admin/oauth/client/{client.pk}/change/")
    assert page.status_code == 200 and "View on site" not in page.content.decode()
