"""A team buys seats and runs itself, in a real browser against a real server, with no staff step (issue 30):
sign up → Stripe Checkout (the local stub's page) → signed webhooks from the stub → the owner invites two developers
→ one accepts and calls `whoami` over `/mcp` with OAuth, the other over stdio with the key → the owner sees both in
the usage → the owner lowers the seats in the Customer Portal (the stub's page; a webhook) → the newest seat holder is
refused with `seat_limit_exceeded` and the owner gets the mail.

Screenshots of every page go to test-artifacts/e2e/journey-*.png; the journey's timings (from the first click on
Sign up to the first served call of an invited member) to test-artifacts/e2e/journey-times.json, which
`bench/self_service_journey.py` reads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import tempfile
import time
from pathlib import Path

import httpx2
import pytest
from django.core.management import call_command
from django.db import connections

from accounts.models import Developer, Organization
from tests.factories import PlanFactory
from tests.support import stripe_data as sd
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS, chromium_executable
from tests.support.mcp import stdio_session, structured, usage_written
from tests.support.oauth import REDIRECT, pkce, run_oauth_server
from tests.support.stripe import WEBHOOK_SECRET
from tests.support.stripe_stub import StripeStub

pytestmark = pytest.mark.django_db(transaction=True)

OWNER = "olivia@journey.test"
ALICE = "alice@journey.test"
BOB = "bob@journey.test"
KEY_RE = re.compile(r"hc_live_[A-Za-z0-9]{40}")


def _run(coroutine):
    """Run an MCP client's coroutine to its end in a thread of its own (this thread holds Playwright's event loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class Mailbox:
    """The server's mail (filemail://: one file per message)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def messages_to(self, email: str) -> list[str]:
        found = []
        for path in sorted(self.folder.glob("*.log"), key=lambda p: p.stat().st_mtime):
            for message in path.read_text(errors="replace").split("-" * 79):
                if f"To: {email}" in message:
                    found.append(message)
        return found

    def wait_for(self, email: str, pattern: str, timeout: float = 15) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in reversed(self.messages_to(email)):
                match = re.search(pattern, message.replace("=\n", ""))
                if match:
                    return match
            time.sleep(0.05)
        raise AssertionError(f"no mail to {email} matching {pattern!r}: {self.messages_to(email)}")


@pytest.fixture
def journey_world(tmp_path, monkeypatch):
    """The Stripe stub (a per-seat price on the plan `team`), the webhook endpoint, and the server that uses both."""
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    stub = StripeStub().start()
    product = sd.product()
    price = sd.price(product, metadata={"hotcross_plan": "team"})
    stub.put(product, price)
    PlanFactory(code="team", name="Team", stripe_price_id=price["id"], monthly_calls_per_seat=1000, signup_max_seats=50)
    out = tempfile.SpooledTemporaryFile(mode="w+")
    call_command("stripe_webhook_endpoint", "--secret", WEBHOOK_SECRET, stdout=out)
    out.seek(0)
    webhook_path = out.read().strip().splitlines()[-1].strip()
    env = {
        "STRIPE_API_HOST": stub.url,
        "STRIPE_TEST_SECRET_KEY": "sk_test_hotcrossFakeKeyForTestsOnly0000",  # tests/settings.py's: no account has it
        "DEBUG": "true",  # STRIPE_API_HOST is refused by dj-stripe's check without it
        "HOTCROSS_KEY_CACHE_SECONDS": "0.1",
        "HOTCROSS_ALERT_CHECK_SECONDS": "0",
    }
    try:
        with run_oauth_server(tmp_path, **env) as server:
            stub.deliver_webhooks_to(server.base + webhook_path, WEBHOOK_SECRET)
            yield server, stub, Mailbox(server.mail_dir)
    finally:
        stub.stop()


def test_a_team_signs_up_pays_invites_and_runs_itself(journey_world):
    from playwright.sync_api import sync_playwright

    server, stub, mail = journey_world
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS)

        def new_page():
            context = browser.new_context(base_url=server.base, viewport={"width": 1280, "height": 900})
            context.route(REDIRECT.rsplit("/", 1)[0] + "/**", lambda route: route.fulfill(body="client callback"))
            page = context.new_page()
            page.set_default_timeout(20_000)
            return page

        def shot(page, name: str) -> None:
            page.screenshot(path=str(ARTIFACTS / f"journey-{name}.png"), full_page=True)

        owner = new_page()
        try:
            organization = _journey(server, stub, mail, owner, new_page, shot, times)
        except BaseException:
            for index, context in enumerate(browser.contexts):
                for number, page in enumerate(context.pages):
                    page.screenshot(path=str(ARTIFACTS / f"journey-failed-{index}-{number}.png"), full_page=True)
            print(server.log()[-5000:])
            raise
        finally:
            browser.close()
            # The ORM calls above ran inside Playwright's greenlet, whose database connection pytest-django does not
            # see: left open, it would keep the test database from being dropped at the end of the run. Closed here,
            # in that greenlet.
            connections.close_all()

    assert Developer.objects.filter(organization=organization).count() == 3
    (ARTIFACTS / "journey-times.json").write_text(
        json.dumps({"sign_up_to_first_call_seconds": round(times["first_call"] - times["start"], 2)})
    )


def _journey(server, stub, mail, owner, new_page, shot, times) -> Organization:
    """The journey's steps (see the module); the organization it made."""
    # 1. Sign up: address, code, organization, plan and seats.
    owner.goto("/")
    times["start"] = time.monotonic()
    owner.click("#sign-up")
    shot(owner, "01-signup")
    owner.fill("input[name=email]", OWNER)
    owner.click("#signup-form [type=submit]")
    code = mail.wait_for(OWNER, r"is (\d{6})\.").group(1)
    shot(owner, "02-signup-code")
    owner.fill("input[name=code]", code)
    owner.click("#code-form [type=submit]")
    owner.fill("#id_name", "Journey Co")
    owner.select_option("#id_plan", "team")
    owner.fill("#id_seats", "2")
    shot(owner, "03-signup-organization")
    owner.click("#details-form [type=submit]")

    # 2. Checkout on the stub: pay for 2 seats; the stub sends its signed webhooks and sends us back.
    owner.wait_for_url(f"{stub.url}/checkout/**")
    shot(owner, "04-checkout")
    owner.fill("#quantity", "2")
    owner.click("#pay")
    owner.wait_for_url("**/signup/done/**")
    owner.wait_for_selector("#active:not([hidden])")
    shot(owner, "05-confirmed")
    organization = Organization.objects.get(name="Journey Co")
    assert organization.subscription_status == "active" and organization.max_seats == 2
    assert Organization.objects.filter(name="Journey Co").count() == 1

    # 3. The owner invites two developers.
    owner.goto("/org/")
    for email in (ALICE, BOB):
        owner.fill("#invite-form input[name=email]", email)
        owner.click("#invite-form [type=submit]")
        owner.wait_for_selector(f"#invitations >> text={email}")
    shot(owner, "06-invited")

    def accept(email: str, name: str):
        token = mail.wait_for(email, r"/invitations/([A-Za-z0-9_-]+)/").group(1)
        page = new_page()
        page.goto(f"/invitations/{token}/")
        shot(page, f"{name}-1-invitation")
        page.click("#invitation-form [type=submit]")
        page.fill("input[name=code]", mail.wait_for(email, r"is (\d{6})\.").group(1))
        page.click("#code-form [type=submit]")
        key = page.input_value("#hc-key").strip()
        assert KEY_RE.fullmatch(key), key
        shot(page, f"{name}-2-key-once")
        return page, key

    alice_page, alice_key = accept(ALICE, "07-alice")
    _, bob_key = accept(BOB, "08-bob")

    # 4. Alice connects an OAuth client: register, consent in her browser, exchange, call whoami over /mcp.
    verifier, challenge = pkce()
    client_id = httpx2.post(
        f"{server.base}/oauth/register/",
        json={
            "client_name": "Journey client",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
    ).json()["client_id"]
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "mcp",
        "state": "journey",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": f"{server.base}/mcp",
    }
    alice_page.goto("/oauth/authorize/?" + httpx2.QueryParams(params).__str__())
    shot(alice_page, "09-consent")
    alice_page.click("#allow")
    alice_page.wait_for_url(f"{REDIRECT}**")
    auth_code = httpx2.URL(alice_page.url).params["code"]
    token = httpx2.post(
        f"{server.base}/oauth/token/",
        data={
            "grant_type": "authorization_code",
            "code": auth_code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    ).json()["access_token"]
    assert not KEY_RE.fullmatch(token)

    async def whoami_http(credential: str):
        from tests.support.mcp import http_client

        async with http_client(server.url, credential) as client:
            return structured(await client.call_tool("whoami", {}))

    alice = _run(whoami_http(token))
    times["first_call"] = time.monotonic()
    assert alice["email"] == ALICE

    # 5. Bob over stdio with his key.
    async def whoami_stdio(key: str):
        with open(server.log_path.with_suffix(".stdio.log"), "w") as errlog:
            async with stdio_session(key, errlog) as client:
                return structured(await client.call_tool("whoami", {}))

    assert _run(whoami_stdio(bob_key))["email"] == BOB

    # 6. The owner sees both in the usage.
    usage_written(2)
    owner.goto("/org/usage/")
    for email in (ALICE, BOB):
        owner.wait_for_selector(f"#usage-per-member >> text={email}")
    shot(owner, "10-usage")

    # 7. The owner lowers the seats in the Customer Portal; the stub's webhook brings it back.
    owner.goto("/org/billing/")
    shot(owner, "11-billing")
    owner.click("#portal-form [type=submit]")
    owner.wait_for_url(f"{stub.url}/portal/**")
    owner.fill("#quantity", "1")
    shot(owner, "12-portal")
    owner.click("#update")
    owner.wait_for_url("**/org/billing/**")
    deadline = time.monotonic() + 15
    while Organization.objects.get(pk=organization.pk).max_seats != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Organization.objects.get(pk=organization.pk).max_seats == 1
    shot(owner, "13-seats-lowered")

    # 8. Bob, the newest seat holder, is refused; Alice is still served; the owner got the mail.
    async def refused_stdio(key: str) -> str:
        """What the stdio server says when it refuses the key at start (it exits: the client sees the pipe close)."""
        path = server.log_path.with_suffix(".stdio2.log")
        with open(path, "w") as errlog:
            try:
                async with stdio_session(key, errlog) as client:
                    await client.call_tool("whoami", {})
            except Exception:  # the refusal: the server ended the session
                return path.read_text()
        raise AssertionError("Bob was served beyond the seats")

    time.sleep(0.2)  # the server's key-check memory (HOTCROSS_KEY_CACHE_SECONDS=0.1)
    said = _run(refused_stdio(bob_key))
    assert "seat_limit_exceeded" in said, said
    assert _run(whoami_http(alice_key))["email"] == ALICE
    mail.wait_for(OWNER, BOB)
    owner.goto("/org/")
    shot(owner, "14-members-after")
    return organization
