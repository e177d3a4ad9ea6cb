"""Admin login throttling (django-axes): after AXES_FAILURE_LIMIT (5) wrong passwords for one username from one
address, even the right password is refused with a page that says why, until the cool-off ends or staff unlock."""

from __future__ import annotations

import io

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def boss():
    return get_user_model().objects.create_superuser("boss", "boss@example.test", "right-password-1")


def attempt(password: str, address: str = "203.0.113.7", username: str = "boss", **headers: str):
    client = Client(REMOTE_ADDR=address, **headers)
    return client.post(LOGIN, {"username": username, "password": password})


def fail(times: int, **kwargs) -> None:
    for n in range(1, times + 1):
        # The login form again, with its error; the failure that reaches the limit already gets the lockout page.
        expected = 429 if n >= 5 else 200
        assert attempt("wrong-password", **kwargs).status_code == expected


def test_the_right_password_is_refused_after_five_failures_with_a_clear_page(boss, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    fail(4)
    assert attempt("right-password-1").status_code == 302  # four failures: still allowed (and the count resets)

    fail(5)
    locked = attempt("right-password-1")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed sign-ins" in page and "boss" in page and "15 minutes" in page
    assert "axes_reset_username boss" in page


def test_the_lockout_is_per_username_and_address(boss):
    fail(5)
    assert attempt("right-password-1").status_code == 429
    assert attempt("right-password-1", address="198.51.100.9").status_code == 302  # the same user elsewhere


def test_a_success_resets_the_count(boss):
    fail(4)
    assert attempt("right-password-1").status_code == 302
    fail(4)
    assert attempt("right-password-1").status_code == 302


def test_staff_unlock_with_the_command_or_in_the_admin(boss):
    fail(5)
    assert attempt("right-password-1").status_code == 429
    call_command("axes_reset_username", "boss", stdout=io.StringIO())
    assert attempt("right-password-1").status_code == 302

    fail(5)
    assert attempt("right-password-1").status_code == 429
    other_admin = Client()
    other_admin.force_login(get_user_model().objects.create_superuser("ops", "ops@example.test", "ops-password-1"))
    assert other_admin.get("/admin/axes/accessattempt/").status_code == 200
    row = AccessAttempt.objects.get(username="boss")
    response = other_admin.post(f"/admin/axes/accessattempt/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert attempt("right-password-1").status_code == 302


def test_a_forged_forwarded_for_does_not_escape_the_lockout(boss, settings):
    settings.BEHIND_PROXY = False
    for n in range(5):
        attempt("wrong-password", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert attempt("right-password-1", HTTP_X_FORWARDED_FOR="10.0.0.99").status_code == 429


def test_behind_a_proxy_the_address_is_the_one_the_proxy_appended(boss, settings):
    settings.BEHIND_PROXY, settings.PROXY_ADDRESSES = True, ["10.1.1.1/32"]
    # Every request arrives from the proxy (one REMOTE_ADDR); the client chose the left part, the proxy added the last.
    for n in range(5):
        attempt("wrong-password", address="10.1.1.1", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 203.0.113.50")
    assert attempt("right-password-1", address="10.1.1.1", HTTP_X_FORWARDED_FOR="203.0.113.50").status_code == 429
    other = attempt("right-password-1", address="10.1.1.1", HTTP_X_FORWARDED_FOR="203.0.113.51")
    assert other.status_code == 302
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) <= {"203.0.113.50"}
