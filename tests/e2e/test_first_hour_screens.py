"""The pages a newcomer meets in the first hour, in a real browser, saved as screenshots to look at (issue 31):
the landing page, sign-in, the code page, consent, /account/, the staff dashboard, an organization and the plan form
(test-artifacts/e2e/first-hour-*.png). Each page is also checked for what the issue found wrong on it."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from oauth2_provider.models import get_application_model

from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory
from tests.support.oauth import REDIRECT, pkce

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_first_hour_pages(browser_page, live_server, settings):
    page = browser_page
    settings.HOTCROSS_PUBLIC_URL = live_server.url
    shots = []

    def shot(name: str) -> None:
        from tests.support.browser import ARTIFACTS

        path = ARTIFACTS / f"first-hour-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    plan = PlanFactory(code="team", name="Team", monthly_calls_per_seat=1000)
    org = OrganizationFactory(name="Acme", max_seats=3, plan=plan)
    developer = DeveloperFactory(organization=org, email="ada@acme.test", first_name="Ada", last_name="Lovelace")
    User.objects.create_superuser("boss", "boss@hotcross.test", "pw-boss-123")

    # Landing: the X-API-Key header is never broken mid-word; sign-up and the MCP URLs are there.
    page.goto("/")
    assert page.locator("#sign-up").is_visible()
    header = page.locator("code.header", has_text="X-API-Key").first
    assert header.evaluate("e => getComputedStyle(e).whiteSpace") == "nowrap"
    shot("01-landing")

    # Sign-in and the code page (which says where the code went).
    page.goto("/account/sign-in/")
    shot("02-sign-in")
    page.fill("input[name=email]", developer.email)
    page.click("#email-form [type=submit], form:has(input[name=email]) [type=submit]")
    page.wait_for_url("**/sign-in/code/**")
    shot("03-sign-in-code")

    # Sign in with the key instead, then consent to a client.
    page.goto("/account/sign-in/")
    page.fill("input[name=key]", developer.plain_key)
    page.click("form:has(input[name=key]) [type=submit]")
    page.wait_for_url("**/account/")
    assert page.inner_text("#email") == developer.email
    assert page.locator("#site-name a").get_attribute("href") == "/"
    shot("04-account")
    client = get_application_model().objects.create(
        name="Claude Desktop",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris=REDIRECT,
    )
    _, challenge = pkce()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT,
            "scope": "mcp",
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": f"{live_server.url}/mcp",
        }
    )
    page.goto(f"/oauth/authorize/?{query}")
    page.wait_for_selector("#allow")
    text = page.inner_text("#content-main")
    sentences = [s.strip() for s in re.split(r"(?<=[.;])\s+", text) if len(s.strip()) > 30]
    assert len(sentences) == len(set(sentences)), "the consent page repeats itself"
    shot("05-consent")

    # Staff: the dashboard, an organization, the plan form (help texts without markup, no monospace leak).
    page.context.clear_cookies()
    page.goto("/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-boss-123")
    page.click("input[type=submit]")
    page.wait_for_selector("text=Organizations and developers")
    assert page.locator("#stripe-models").count() == 1 and not page.locator("#stripe-models").get_attribute("open")
    shot("06-dashboard")
    page.goto(f"/admin/accounts/organization/{org.pk}/change/")
    body = page.inner_text("#content")
    assert "+00:00" not in body and "None" not in body
    shot("07-organization")
    page.goto(f"/admin/accounts/plan/{plan.pk}/change/")
    assert page.locator("#plan_form code, .help code").count() == 0
    assert page.locator("#id_name").evaluate("e => getComputedStyle(e).fontFamily") != "monospace"
    shot("08-plan-form")

    assert all(path.stat().st_size > 10_000 for path in shots)
