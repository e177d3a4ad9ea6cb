"""The email sign-in's limits (issue 26, item 2) and its mail sent after the answer (item 4): codes made per address
(the mails of an hour, starts and resends) and per client address, codes tried per address and per client address,
one unused code per address, a growing wait after wrong codes, the same for any address, counted in the database
(so across workers); junk refused before any query; a start as fast for a developer's address as for an unknown one
with a slow mail server, and the mail still arrives."""

from __future__ import annotations

import datetime
import logging
import re
import socket
import statistics
import time

import httpx2
import pytest
from django.core import mail
from django.db.models import F
from django.test import Client

from infra import mailer
from oauth.models import SignInCode, SignInEvent
from tests.factories import DeveloperFactory
from tests.support.smtp import SlowSmtpSink

START, CODE = "/account/sign-in/", "/account/sign-in/code/"


def _start(browser: Client, email: str, ip: str = "198.51.100.1"):
    return browser.post(START, {"email": email}, REMOTE_ADDR=ip)


def _try(browser: Client, code: str, ip: str = "198.51.100.1"):
    return browser.post(CODE, {"code": code}, REMOTE_ADDR=ip)


def _resend(browser: Client, ip: str = "198.51.100.1"):
    SignInCode.objects.update(sent_at=F("sent_at") - datetime.timedelta(seconds=31))  # past the 30 s between resends
    return browser.post(CODE, {"resend": "1"}, REMOTE_ADDR=ip)


def _mails() -> list:
    assert mailer.wait_idle(timeout=10)
    return mail.outbox


def _codes(email: str) -> list[str]:
    return [re.findall(r"sign-in code is (\d{6})", m.body)[-1] for m in _mails() if m.to == [email]]


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _time_passes(seconds: float) -> None:
    """As if `seconds` had passed for the limits: every counted step moves that far back."""
    SignInEvent.objects.update(created_at=F("created_at") - datetime.timedelta(seconds=seconds))


def _message(response) -> str:
    return re.search(r'id="error">([^<]*)<', response.content.decode()).group(1)


# --- codes made ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_fourth_code_for_an_address_within_the_hour_is_a_429_with_no_code_and_no_mail_known_or_not():
    DeveloperFactory(email="known@example.com")
    refusals = []
    for email in ("known@example.com", "nobody@example.com"):
        for n in range(3):  # each from another client address: the limit is the address's
            assert _start(Client(), email, ip=f"203.0.113.{n + 1}").status_code == 302
        codes = SignInCode.objects.count()
        fourth = _start(Client(), email, ip="203.0.113.99")
        assert fourth.status_code == 429
        assert 3590 <= int(fourth["Retry-After"]) <= 3600
        assert SignInCode.objects.count() == codes
        refusals.append((fourth.status_code, fourth["Retry-After"], _message(fourth)))
    assert "Too many codes were asked for this address" in refusals[0][2]
    assert refusals[0] == refusals[1]  # nothing tells a developer's address from another
    assert len(_mails()) == 3


@pytest.mark.django_db
def test_resends_count_with_starts_toward_the_mails_of_an_hour():
    DeveloperFactory(email="resend@example.com")
    DeveloperFactory(email="starts@example.com")
    browser = Client()
    assert _start(browser, "resend@example.com").status_code == 302
    assert _resend(browser).status_code == 200
    assert _resend(browser).status_code == 200
    refused = _start(Client(), "resend@example.com")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    # and a resend after three starts is refused the same way
    browsers = [Client() for _ in range(3)]
    for each in browsers:
        assert _start(each, "starts@example.com").status_code == 302
    refused = _resend(browsers[-1])
    assert refused.status_code == 429 and "Too many codes were asked" in _message(refused)
    assert int(refused["Retry-After"]) > 0
    assert len(_codes("resend@example.com")) == len(_codes("starts@example.com")) == 3


@pytest.mark.django_db
def test_codes_asked_from_one_client_address_are_limited_across_addresses():
    for n in range(20):
        assert _start(Client(), f"spray{n}@example.com", ip="192.0.2.7").status_code == 302
    refused = _start(Client(), "spray20@example.com", ip="192.0.2.7")
    assert refused.status_code == 429 and "from your network" in _message(refused)
    assert int(refused["Retry-After"]) > 0
    assert not SignInCode.objects.filter(email="spray20@example.com").exists()
    assert _start(Client(), "spray20@example.com", ip="192.0.2.8").status_code == 302


@pytest.mark.django_db
def test_a_new_start_ends_the_earlier_unused_code_of_the_address():
    developer = DeveloperFactory(email="twice@example.com")
    first, second = Client(), Client()
    _start(first, "twice@example.com")
    _start(second, "Twice@Example.com")
    old, new = _codes("twice@example.com")
    assert SignInCode.objects.filter(email_key="twice@example.com", used_at=None).count() == 1
    ended = _try(first, old)
    assert ended.status_code == 400 and "This sign-in is over" in _message(ended)
    assert _try(second, new).status_code == 302
    assert second.get("/account/").content.decode().count(developer.api_key_prefix) >= 1


# --- codes tried --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_codes_tried_for_an_address_are_limited_across_codes_and_client_addresses(settings):
    settings.HOTCROSS_SIGN_IN_FAILURE_WAIT_SECONDS = 0  # the wait is the next test's
    DeveloperFactory(email="target@example.com")
    tries = 0
    for _ in range(2):
        browser = Client()
        _start(browser, "target@example.com")
        code = _codes("target@example.com")[-1]
        for _ in range(5):
            tries += 1
            assert _try(browser, _wrong(code), ip=f"203.0.113.{tries}").status_code == 400
    browser = Client()
    _start(browser, "target@example.com")
    right = _try(browser, _codes("target@example.com")[-1], ip="203.0.113.200")
    assert right.status_code == 429 and "Too many codes were tried for this address" in _message(right)
    assert int(right["Retry-After"]) > 0
    assert SignInCode.objects.get(used_at=None).attempts == 0  # the refused try was not made
    assert browser.get("/account/").status_code == 302  # not signed in


@pytest.mark.django_db
def test_codes_tried_from_one_client_address_are_limited_across_addresses(settings):
    settings.HOTCROSS_SIGN_IN_FAILURE_WAIT_SECONDS = 0
    settings.HOTCROSS_SIGN_IN_GUESSES_PER_CLIENT_PER_HOUR = 4
    browsers = {}
    for name in ("a", "b", "c"):
        browsers[name] = Client()
        _start(browsers[name], f"{name}@example.com", ip=f"203.0.113.{ord(name)}")
    for name in ("a", "a", "b", "b"):
        assert _try(browsers[name], "123456", ip="192.0.2.66").status_code == 400
    refused = _try(browsers["c"], "123456", ip="192.0.2.66")
    assert refused.status_code == 429 and "from your network" in _message(refused)
    assert int(refused["Retry-After"]) > 0
    assert _try(browsers["c"], "123456", ip="192.0.2.67").status_code == 400  # another client may still try


@pytest.mark.django_db
def test_wrong_codes_make_each_further_try_wait_longer_until_a_right_one():
    DeveloperFactory(email="slow@example.com")
    browser = Client()
    _start(browser, "slow@example.com")
    code = _codes("slow@example.com")[-1]
    for _ in range(3):  # a few wrong codes cost nothing
        assert _try(browser, _wrong(code)).status_code == 400
    fourth = _try(browser, code)  # even the right code waits
    assert fourth.status_code == 429 and fourth["Retry-After"] == "2"
    assert "wait 2 seconds before the next try" in _message(fourth)
    assert SignInCode.objects.get().attempts == 3
    _time_passes(2)
    assert _try(browser, _wrong(code)).status_code == 400
    fifth = _try(browser, code)
    assert fifth.status_code == 429 and fifth["Retry-After"] == "4"  # doubled
    _time_passes(4)
    assert _try(browser, code).status_code == 302
    # a right code ends the wait: the next sign-in's wrong codes are answered at once
    again = Client()
    _start(again, "slow@example.com")
    for _ in range(3):
        assert _try(again, "999999" if code != "999999" else "888888").status_code == 400


# --- junk -----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "email",
    [
        "grace\x00@example.com",
        "\x00",
        "grace@example.com\x00",
        "li\nne@example.com",
        "tab\t@example.com",
        "no-at-sign",
        "a" * 250 + "@example.com",
        "",
        "   ",
    ],
)
def test_junk_in_the_address_is_a_400_that_changes_nothing(email):
    DeveloperFactory(email="grace@example.com")
    response = _start(Client(), email)
    assert response.status_code == 400
    assert "Enter the email address your organization registered for you." in _message(response)
    assert not SignInCode.objects.exists() and not SignInEvent.objects.exists()
    assert _mails() == []


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["12\x003456", "\x00", "123456\x00", "abcdef", "１２３４５６", "1234567", "12345", ""])
def test_junk_in_the_code_is_a_400_that_counts_no_try(code):
    DeveloperFactory(email="grace@example.com")
    browser = Client()
    _start(browser, "grace@example.com")
    response = _try(browser, code)
    assert response.status_code == 400 and "Enter the 6-digit code from the mail" in _message(response)
    assert SignInCode.objects.get().attempts == 0
    assert not SignInEvent.objects.filter(kind="guess").exists()


# --- across workers -------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_limits_count_what_another_worker_did(oauth_server):
    """Three codes asked through a real server (another process) leave none for this one."""
    DeveloperFactory(email="workers@example.com")
    with httpx2.Client(base_url=oauth_server.base, timeout=10) as http:
        for _ in range(3):
            page = http.get(START)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            answer = http.post(
                START,
                data={"email": "workers@example.com", "csrfmiddlewaretoken": token},
                headers={"Cookie": f"csrftoken={page.cookies['csrftoken']}"},
            )
            assert answer.status_code == 302, answer.text
    assert SignInEvent.objects.filter(email_key="workers@example.com").count() == 3
    refused = _start(Client(), "workers@example.com")
    assert refused.status_code == 429 and "Too many codes were asked for this address" in _message(refused)


# --- the mail after the answer ------------------------------------------------------------------------------------


SMTP_DELAY = 0.15  # a reply; one mail is ≥ 7 replies (greeting, EHLO, MAIL, RCPT, DATA, end of data, QUIT)


@pytest.mark.django_db
def test_a_known_address_starts_as_fast_as_an_unknown_one_with_a_slow_mail_server(settings):
    with SlowSmtpSink(delay=SMTP_DELAY) as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", sink.port, 10
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        _start(Client(), "warm-up@example.com")  # the first request of a process pays for imports and templates
        known, unknown = [], []
        for n in range(3):
            DeveloperFactory(email=f"known{n}@example.com")
            for email, times in ((f"known{n}@example.com", known), (f"nobody{n}@example.com", unknown)):
                began = time.perf_counter()
                assert _start(Client(), email).status_code == 302
                times.append(time.perf_counter() - began)
        print(f"start: known {[round(t * 1000) for t in known]} ms, unknown {[round(t * 1000) for t in unknown]} ms")
        one_mail = 7 * SMTP_DELAY
        assert max(known) < one_mail / 2 and max(unknown) < one_mail / 2
        assert abs(statistics.median(known) - statistics.median(unknown)) < one_mail / 4
        began = time.perf_counter()
        received = sink.wait_for(3, timeout=30)
        print(f"the three mails arrived {time.perf_counter() - began:.2f} s after the last answer")
        assert sorted(r.recipients[0] for r in received) == [f"known{n}@example.com" for n in range(3)]
        assert all(re.search(r"sign-in code is \d{6}", r.body) for r in received)
        assert mailer.wait_idle(timeout=10)


@pytest.mark.django_db
def test_a_mail_that_cannot_be_sent_is_logged_without_its_code_and_the_next_one_goes(settings, caplog):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 2
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    DeveloperFactory(email="lost@example.com")
    with caplog.at_level(logging.INFO):
        assert _start(Client(), "lost@example.com").status_code == 302
        assert mailer.wait_idle(timeout=10)
    failures = [r for r in caplog.records if r.name == "infra.mailer" and r.levelno == logging.ERROR]
    assert len(failures) == 1 and "sign-in mail not sent" in failures[0].getMessage()
    assert not re.search(r"\b\d{6}\b", caplog.text)  # no code anywhere in the log
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert _start(Client(), "lost@example.com").status_code == 302
    assert len(_codes("lost@example.com")) == 1
