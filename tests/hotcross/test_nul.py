"""A NUL in a query parameter or form field is a 400 before any view (`hotcross.middleware.RejectNulMiddleware`):
PostgreSQL refuses NUL in text, so wherever such a value reached a query it was a 500."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_a_nul_in_the_admins_search_is_a_400(admin_client):
    response = admin_client.get("/admin/accounts/developer/", {"q": "ada\x00"}, HTTP_ACCEPT="text/html")
    assert response.status_code == 400 and "NUL" in response.content.decode()


def test_a_nul_in_a_form_field_is_a_400_in_json_for_an_api_client(admin_client):
    response = admin_client.post("/admin/accounts/developer/", {"action": "revoke_keys", "_selected_action": "\x00"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_the_sign_in_page_still_says_what_is_wrong_itself(client):
    response = client.post("/account/sign-in/", {"email": "grace\x00@example.com"})
    assert response.status_code == 400 and "Enter the email address" in response.content.decode()
