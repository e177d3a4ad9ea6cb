"""Staff actions on OAuth clients and grants (with history, tokens never shown), and the developer's email sign-in:
the same answer for unknown addresses, 5 tries, 10 minutes; /account/."""

from __future__ import annotations

import datetime
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts.exceptions import KeyRefused
from infra import mailer
from oauth.authentication import authenticate_token
from oauth.models import Client as OAuthClient
from oauth.models import Grant, SignInCode
from tests.factories import DeveloperFactory
from tests.support.oauth import tokens_for

pytestmark = pytest.mark.django_db


def _mail_sent() -> list:
    """The mails sent so far: sign-in mails leave after the answer, from the process's mail thread."""
    assert mailer.wait_idle(timeout=10)
    return mail.outbox


def _code_from_mail() -> str:
    return re.findall(r"sign-in code is (\d{6})", _mail_sent()[-1].body)[-1]


def test_staff_revoke_a_grant_in_the_admin_with_history(admin_client):
    developer = DeveloperFactory()
    tokens, _ = tokens_for(developer)
    grant = Grant.objects.get()
    page = admin_client.get("/admin/oauth/grant/")
    assert page.status_code == 200 and developer.email in page.content.decode()
    response = admin_client.post("/admin/oauth/grant/", {"action": "revoke", "_selected_action": [grant.pk]})
    assert response.status_code == 302
    with pytest.raises(KeyRefused):
        authenticate_token(tokens["access_token"])
    assert LogEntry.objects.filter(object_id=str(developer.pk), change_message__contains="Revoked the OAuth").exists()


def test_staff_sign_a_developer_out_of_every_client(admin_client):
    developer = DeveloperFactory()
    one, _ = tokens_for(developer)
    two, _ = tokens_for(developer)
    admin_client.post(
        "/admin/accounts/developer/", {"action": "sign_out_everywhere", "_selected_action": [developer.pk]}
    )
    for tokens in (one, two):
        with pytest.raises(KeyRefused):
            authenticate_token(tokens["access_token"])
    assert not Grant.objects.filter(revoked_at=None).exists()
    assert LogEntry.objects.filter(change_message__contains="Signed out of every OAuth client").exists()


def test_staff_block_a_client(admin_client):
    developer = DeveloperFactory()
    tokens, flow = tokens_for(developer)
    client = OAuthClient.objects.get(client_id=flow.client_id)
    assert admin_client.get("/admin/oauth/client/").status_code == 200
    admin_client.post("/admin/oauth/client/", {"action": "block", "_selected_action": [client.pk]})
    client.refresh_from_db()
    assert client.blocked_at is not None
    with pytest.raises(KeyRefused):
        authenticate_token(tokens["access_token"])
    assert LogEntry.objects.filter(object_id=str(client.pk), change_message__startswith="Blocked").exists()


def test_tokens_are_not_in_the_admin(admin_client):
    developer = DeveloperFactory()
    tokens, _ = tokens_for(developer)
    index = admin_client.get("/admin/").content.decode()
    assert "Access tokens" not in index and "Refresh tokens" not in index
    assert admin_client.get("/admin/oauth2_provider/accesstoken/").status_code in (403, 404, 302)
    for url in ("/admin/oauth/grant/", "/admin/oauth/client/"):
        assert tokens["access_token"] not in admin_client.get(url).content.decode()


def test_email_code_signs_in_and_lands_on_the_account_page():
    developer = DeveloperFactory(email="grace@example.com")
    browser = Client()
    response = browser.post("/account/sign-in/", {"email": "Grace@Example.com"})
    assert response.status_code == 302
    assert len(_mail_sent()) == 1 and mail.outbox[0].to == ["grace@example.com"]
    signed_in = browser.post("/account/sign-in/code/", {"code": _code_from_mail()})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/account/"
    page = browser.get("/account/").content.decode()
    assert developer.organization.name in page and developer.api_key_prefix in page
    # Issue 31: the header led to the staff login, and "You hold a seat (5 in your organization)" read ambiguously.
    assert '<div id="site-name"><a href="/">Hotcross</a></div>' in page and 'href="/admin/"' not in page
    seats = developer.organization.max_seats
    assert f"You hold one of the {seats} seat{'s' if seats != 1 else ''} your organization pays for." in page


def test_unknown_email_gets_the_same_answer_and_no_mail():
    known, unknown = Client(), Client()
    DeveloperFactory(email="known@example.com")
    a = known.post("/account/sign-in/", {"email": "known@example.com"})
    b = unknown.post("/account/sign-in/", {"email": "nobody@example.com"})
    assert a.status_code == b.status_code == 302 and a["Location"] == b["Location"]
    page_a = known.get("/account/sign-in/code/").content.decode().replace("known@example.com", "X")
    page_b = unknown.get("/account/sign-in/code/").content.decode().replace("nobody@example.com", "X")
    strip = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')
    assert strip.sub("", page_a) == strip.sub("", page_b)
    assert len(_mail_sent()) == 1
    wrong = unknown.post("/account/sign-in/code/", {"code": "123456"})
    assert "That code is not right" in wrong.content.decode()


def test_a_code_guessed_six_times_is_refused_even_when_right(settings):
    settings.HOTCROSS_SIGN_IN_FAILURE_WAIT_SECONDS = 0  # no wait between tries here (test_sign_in_limits.py has it)
    DeveloperFactory(email="eve@example.com")
    browser = Client()
    browser.post("/account/sign-in/", {"email": "eve@example.com"})
    code = _code_from_mail()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        assert browser.post("/account/sign-in/code/", {"code": wrong}).status_code == 400
    sixth = browser.post("/account/sign-in/code/", {"code": code})
    assert sixth.status_code == 400 and "Too many wrong codes" in sixth.content.decode()
    assert browser.get("/account/").status_code == 302  # not signed in


def test_an_expired_code_is_refused():
    DeveloperFactory(email="old@example.com")
    browser = Client()
    browser.post("/account/sign-in/", {"email": "old@example.com"})
    SignInCode.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    response = browser.post("/account/sign-in/code/", {"code": _code_from_mail()})
    assert response.status_code == 400 and "expired" in response.content.decode()


def test_a_revoked_developer_cannot_sign_in_by_email_and_is_told_why():
    from accounts import services

    developer = DeveloperFactory(email="gone@example.com")
    services.revoke_key(developer=developer)
    browser = Client()
    browser.post("/account/sign-in/", {"email": "gone@example.com"})
    response = browser.post("/account/sign-in/code/", {"code": _code_from_mail()})
    assert response.status_code == 400 and "key_revoked" in response.content.decode()


def test_account_page_revokes_a_grant():
    developer = DeveloperFactory()
    tokens, _ = tokens_for(developer)
    browser = Client()
    browser.post("/account/sign-in/", {"key": developer.plain_key})
    grant = Grant.objects.get()
    browser.post("/account/", {"revoke_grant": grant.pk})
    with pytest.raises(KeyRefused):
        authenticate_token(tokens["access_token"])


def test_the_code_page_says_where_a_printed_mail_goes(settings):
    """Issue 31: with the development console backend (`make run`'s) the code is printed among the server's log
    lines, which the page never said. It says so then, and only then."""
    DeveloperFactory(email="ada@example.com")
    browser = Client()
    browser.post("/account/sign-in/", {"email": "ada@example.com"})
    assert 'id="mail-printed"' not in browser.get("/account/sign-in/code/").content.decode()  # mail is sent
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    page = browser.get("/account/sign-in/code/").content.decode()
    assert 'id="mail-printed"' in page and "make run" in page
