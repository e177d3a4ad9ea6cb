"""Sign-up with Stripe Checkout on the local stub (issue 30, steps 1–2) and accepting an invitation: the address
proven with a mailed code, the organization made once whatever is reloaded, retried or delivered twice or out of
order, bad input changing nothing, the limits, and invitation links that work once."""

from __future__ import annotations

import datetime
import re

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.authentication import authenticate_key
from accounts.choices import Role
from accounts.models import Developer, Invitation, Organization, ThrottleEvent
from infra import mailer
from infra.log_filters import redact
from oauth import signin
from oauth.authentication import mcp_resource
from oauth.models import SignInCode
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support.selfserve import (
    MAX_SEATS,
    MIN_SEATS,
    browser_post,
    deliver,
    local_path,
    mailed_code,
    make_signup_plan,
    prove_signup_address,
)
from tests.support.stripe import _only_loopback  # noqa: F401 - an autouse fixture, for this module

pytestmark = pytest.mark.django_db

OWNER = "ada@acme.test"


@pytest.fixture
def signup_plan(stripe_stub):
    return make_signup_plan(stripe_stub)


def _start(client, plan, seats=3, name="Acme", **extra):
    return client.post("/signup/organization/", {"name": name, "plan": plan.code, "seats": str(seats), **extra})


def test_sign_up_pays_on_checkout_and_the_organization_becomes_active(client, stripe_stub, webhook, signup_plan):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)

    response = _start(client, plan, seats=3, develops="on")

    assert response.status_code == 303
    checkout_url = response["Location"]
    assert checkout_url.startswith(f"{stripe_stub.url}/checkout/cs_test_")
    organization = Organization.objects.get()
    assert (organization.subscription_status, organization.max_seats) == ("incomplete", 3)
    status, location, _ = browser_post(checkout_url, {"quantity": "4"})
    assert status == 303 and location.startswith("http://testserver/signup/done/?session_id=cs_test_")
    page = client.get(local_path(location))
    assert page.status_code == 200
    assert deliver(webhook, stripe_stub.events) == [200, 200]
    organization.refresh_from_db()
    assert (organization.subscription_status, organization.max_seats) == ("active", 4)
    assert stripe_stub.unexpected == []  # dj-stripe's syncs of the session and subscription found what they asked


def _pay(stripe_stub, checkout_url, quantity):
    status, location, _ = browser_post(checkout_url, {"quantity": str(quantity)})
    assert status == 303, location
    return location


def _customer_creations(stripe_stub):
    return [r for r in stripe_stub.requests if r.method == "POST" and r.path == "/v1/customers"]


def test_the_checkout_session_sells_the_plan_s_seats_within_its_bounds(client, stripe_stub, signup_plan):
    plan, price = signup_plan
    prove_signup_address(client, OWNER)

    _start(client, plan, seats=3)

    organization = Organization.objects.get()
    (created,) = [r for r in stripe_stub.requests if r.path == "/v1/checkout/sessions"]
    sent = {key: values[0] for key, values in created.query.items()}
    assert sent["mode"] == "subscription"
    assert sent["customer"] == organization.stripe_customer_id
    assert sent["client_reference_id"] == str(organization.pk)
    assert sent["line_items[0][price]"] == price["id"]
    assert sent["line_items[0][quantity]"] == "3"
    assert sent["line_items[0][adjustable_quantity][enabled]"] == "true"
    assert (
        sent["line_items[0][adjustable_quantity][minimum]"],
        sent["line_items[0][adjustable_quantity][maximum]"],
    ) == (
        str(MIN_SEATS),
        str(MAX_SEATS),
    )
    (customer,) = stripe_stub.customers()
    assert customer["id"] == organization.stripe_customer_id
    assert customer["metadata"] == {"hotcross_organization": str(organization.pk)}
    assert customer["email"] == OWNER
    owner = Developer.objects.get()
    assert (owner.email, owner.role, owner.organization_id) == (OWNER, Role.OWNER, organization.pk)
    assert not owner.holds_seat  # a seat comes once paid, if the owner develops (on /org/)
    assert client.get("/signup/status/").json() == {
        "organization": "Acme",
        "status": "incomplete",
        "active": False,
        "seats": 3,
    }


def test_the_success_page_waits_then_says_active(client, stripe_stub, signup_plan):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)
    checkout_url = _start(client, plan)["Location"]
    session_id = checkout_url.rsplit("/", 1)[1]

    waiting = client.get(f"/signup/done/?session_id={session_id}")  # back before paying: nothing to bring home
    assert waiting.status_code == 200 and "Waiting for payment confirmation" in waiting.content.decode()
    assert "signup/status/" in waiting.content.decode()
    location = _pay(stripe_stub, checkout_url, 5)
    done = client.get(local_path(location))  # no webhook yet: the page brings the session home itself

    body = done.content.decode()
    assert done.status_code == 200 and "Acme is active" in body and 'href="/org/"' in body
    assert "no-cache" in done["Cache-Control"] or "no-store" in done["Cache-Control"]
    assert client.get("/signup/status/").json()["active"] is True
    organization = Organization.objects.get()
    assert (organization.subscription_status, organization.max_seats) == ("active", 5)
    assert organization.plan == plan


def test_only_the_signed_in_owner_s_return_asks_stripe_and_only_for_their_own_session(client, stripe_stub, signup_plan):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)
    location = _pay(stripe_stub, _start(client, plan)["Location"], 4)
    session_id = location.rsplit("=", 1)[1]
    stripe_stub.forget_requests()

    stranger = Client().get(f"/signup/done/?session_id={session_id}")  # someone else holding the paid session's id

    assert stranger.status_code == 200 and "Sign in" in stranger.content.decode()
    assert stripe_stub.requested() == []  # no Stripe read for a visitor who is nobody's owner
    assert Organization.objects.get().subscription_status == "incomplete"

    other_owner = Client()
    prove_signup_address(other_owner, "bo@beta.test")
    _start(other_owner, plan, name="Beta")
    stripe_stub.forget_requests()
    foreign = other_owner.get(f"/signup/done/?session_id={session_id}")  # Beta's owner, with Acme's session

    assert foreign.status_code == 200 and "Waiting for payment confirmation" in foreign.content.decode()
    assert {o.name: o.subscription_status for o in Organization.objects.all()} == {
        "Acme": "incomplete",
        "Beta": "incomplete",
    }

    done = client.get(local_path(location))  # Acme's owner: brought home at once

    assert "Acme is active" in done.content.decode()
    assert Organization.objects.get(name="Acme").max_seats == 4
    assert Organization.objects.get(name="Beta").subscription_status == "incomplete"


def test_webhooks_twice_and_out_of_order_and_the_page_reloaded_make_one_organization(
    client, stripe_stub, webhook, signup_plan
):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)
    checkout_url = _start(client, plan, seats=2)["Location"]
    location = _pay(stripe_stub, checkout_url, 6)
    created, completed = stripe_stub.events
    assert (created["type"], completed["type"]) == ("customer.subscription.created", "checkout.session.completed")

    assert deliver(webhook, [completed, created, completed, created]) == [200] * 4
    for _ in range(2):
        assert client.get(local_path(location)).status_code == 200

    organization = Organization.objects.get()
    assert (organization.subscription_status, organization.max_seats) == ("active", 6)
    assert len(_customer_creations(stripe_stub)) == 1 and len(stripe_stub.customers()) == 1
    assert Developer.objects.count() == 1


def test_the_checkout_webhook_alone_activates_the_organization(client, stripe_stub, webhook, signup_plan):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)
    _pay(stripe_stub, _start(client, plan, seats=2)["Location"], 2)
    completed = [e for e in stripe_stub.events if e["type"] == "checkout.session.completed"]

    assert deliver(webhook, completed) == [200]

    assert Organization.objects.get().subscription_status == "active"


def test_reload_retry_and_back_from_checkout_keep_one_organization_and_one_customer(client, stripe_stub, signup_plan):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)

    first = _start(client, plan, seats=3)
    again = _start(client, plan, seats=3)  # a reload of the POST
    cancelled = client.get("/signup/organization/?cancelled=1")  # Checkout's cancel URL: the values are kept
    changed = _start(client, plan, seats=7, name="Acme Corp")

    assert first.status_code == again.status_code == changed.status_code == 303
    assert cancelled.status_code == 200
    body = cancelled.content.decode()
    assert 'value="Acme"' in body and 'value="3"' in body and "Checkout was cancelled" in body
    organization = Organization.objects.get()
    assert (organization.name, organization.max_seats) == ("Acme Corp", 7)
    assert len(_customer_creations(stripe_stub)) == 1
    assert len(stripe_stub.checkout_sessions()) == 3


def test_an_address_of_a_paying_organization_is_told_to_sign_in(client, stripe_stub, signup_plan):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)
    _pay(stripe_stub, _start(client, plan)["Location"], 2)
    client.get(local_path(stripe_stub.checkout_sessions()[0]["success_url"]))
    assert Organization.objects.get().subscription_status == "active"
    other = Client()
    prove_signup_address(other, OWNER.upper())

    response = _start(other, plan, seats=4, name="Second")

    assert response.status_code == 409
    assert "Sign in" in response.content.decode()
    organization = Organization.objects.get()
    assert (organization.name, organization.max_seats) == ("Acme", 2)


# --- bad input changes nothing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seats": str(MIN_SEATS - 1)}, "sold with 2 to 10 seats"),
        ({"seats": str(MAX_SEATS + 1)}, "sold with 2 to 10 seats"),
        ({"seats": "three"}, "whole number"),
        ({"plan": "no-such-plan"}, "Choose one of the plans"),
        ({"name": "  "}, "organization&#x27;s name"),
    ],
)
def test_bad_details_change_nothing(client, stripe_stub, signup_plan, fields, message):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)

    response = client.post("/signup/organization/", {"name": "Acme", "plan": plan.code, "seats": "3", **fields})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Organization.objects.exists() and not Developer.objects.exists()
    assert stripe_stub.requests == []


def test_no_proven_address_no_organization(client, stripe_stub, signup_plan):
    plan, _ = signup_plan
    assert client.get("/signup/organization/")["Location"] == "/signup/"
    assert client.get("/signup/code/")["Location"] == "/signup/"

    response = _start(client, plan)

    assert response.status_code == 400 and "Confirm your email address first" in response.content.decode()
    assert not Organization.objects.exists() and stripe_stub.requests == []


def test_a_wrong_code_proves_nothing(client, stripe_stub, signup_plan):
    plan, _ = signup_plan
    client.post("/signup/", {"email": OWNER})
    right = mailed_code(OWNER)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    response = client.post("/signup/code/", {"code": wrong})

    assert response.status_code == 400 and "not right" in response.content.decode()
    assert _start(client, plan).status_code == 400
    assert not Organization.objects.exists()


def test_a_bad_address_is_refused(client):
    response = client.post("/signup/", {"email": "not an address"})
    assert response.status_code == 400
    assert not ThrottleEvent.objects.exists()


def test_sign_up_starts_are_limited_per_address_and_per_client(client, settings):
    settings.HOTCROSS_SIGNUPS_PER_ADDRESS_PER_HOUR = 1
    settings.HOTCROSS_SIGNUPS_PER_CLIENT_PER_HOUR = 2
    assert client.post("/signup/", {"email": OWNER}).status_code == 302

    by_address = client.post("/signup/", {"email": OWNER})
    assert client.post("/signup/", {"email": "bob@acme.test"}).status_code == 302
    by_client = client.post("/signup/", {"email": "carol@acme.test"})

    for response, words in ((by_address, "with this address"), (by_client, "from your network")):
        assert response.status_code == 429
        assert int(response["Retry-After"]) > 0
        assert words in response.content.decode()
    assert mailer.wait_idle(timeout=10)
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@acme.test", "bob@acme.test"]


def test_stripe_not_answering_says_try_again_and_keeps_the_organization(client, stripe_stub, signup_plan):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)
    stripe_stub.fail_next("/v1/checkout/sessions", 500)

    response = _start(client, plan)

    assert response.status_code == 503 and "Stripe did not answer, try again" in response.content.decode()
    retried = _start(client, plan)
    assert retried.status_code == 303, re.findall(r'id="error">([^<]*)', retried.content.decode())
    assert Organization.objects.count() == 1 and len(_customer_creations(stripe_stub)) == 1


def test_stripe_not_answering_on_the_success_page_is_no_error(client, stripe_stub, signup_plan):
    plan, _ = signup_plan
    prove_signup_address(client, OWNER)
    location = _pay(stripe_stub, _start(client, plan)["Location"], 2)
    session_id = location.rsplit("=", 1)[1]
    stripe_stub.fail_next(f"/v1/checkout/sessions/{session_id}", 500)

    response = client.get(local_path(location))

    assert response.status_code == 200 and "Waiting for payment confirmation" in response.content.decode()
    assert client.get("/signup/done/?session_id=not-a-session").status_code == 200


# --- invitations ------------------------------------------------------------------------------------------------------

INVITEE = "grace@acme.test"


@pytest.fixture
def invited():
    """An active organization with 3 seats, its owner (no seat), and an invitation of INVITEE as a member."""
    organization = OrganizationFactory(name="Acme", max_seats=3)
    owner = DeveloperFactory(organization=organization, email=OWNER, role=Role.OWNER)
    invitation, token = services.invite(by=owner, email=INVITEE)
    return organization, owner, invitation, token


def _accept(client, token, address=INVITEE):
    page = client.get(f"/invitations/{token}/")
    assert page.status_code == 200, page.content.decode()[:300]
    started = client.post(f"/invitations/{token}/")
    assert started.status_code == 302 and started["Location"] == f"/invitations/{token}/code/"
    return client.post(f"/invitations/{token}/code/", {"code": mailed_code(address)})


def test_an_invitation_accepted_shows_the_key_once_and_signs_in(client, invited):
    organization, _, invitation, token = invited
    page = client.get(f"/invitations/{token}/")
    body = page.content.decode()
    assert "Acme" in body and OWNER in body and "member" in body and INVITEE in body

    joined = _accept(client, token)

    assert joined.status_code == 200
    assert joined["Cache-Control"].startswith("no-store") or "no-store" in joined["Cache-Control"]
    body = joined.content.decode()
    developer = Developer.objects.get(email=INVITEE)
    key = re.search(r'value="(hc_live_[A-Za-z0-9]+)"', body).group(1)
    assert authenticate_key(key).developer_id == developer.pk
    assert mcp_resource() in body and "Authorization: Bearer" in body and "X-API-Key" in body
    assert "Claude Desktop" in body
    assert (developer.organization_id, developer.role) == (organization.pk, Role.MEMBER)
    assert client.get("/account/").status_code == 200  # signed in
    invitation.refresh_from_db()
    assert invitation.state == "accepted"


def test_an_invitation_works_once(client, invited):
    *_, token = invited
    assert _accept(client, token).status_code == 200

    again = Client().get(f"/invitations/{token}/")

    assert again.status_code == 410 and "already been used" in again.content.decode()
    assert Developer.objects.filter(email=INVITEE).count() == 1


def test_an_expired_or_revoked_invitation_is_refused(client, invited):
    _, owner, invitation, token = invited
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    expired = client.get(f"/invitations/{token}/")
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() + datetime.timedelta(hours=1))
    services.revoke_invitation(by=owner, invitation=invitation)
    revoked = client.post(f"/invitations/{token}/")
    unknown = client.get("/invitations/not-a-token/")

    assert expired.status_code == 410 and "expired" in expired.content.decode()
    assert revoked.status_code == 410 and "revoked" in revoked.content.decode()
    assert unknown.status_code == 410 and "not valid" in unknown.content.decode()
    assert not Developer.objects.filter(email=INVITEE).exists()


def test_a_code_for_another_address_does_not_accept(client, invited):
    *_, token = invited
    client.get(f"/invitations/{token}/")
    other = signin.start_address_proof("mallory@evil.test", SignInCode.Purpose.INVITATION)
    session = client.session
    session["hotcross_invitation_code"] = {"invitation": str(invited[2].pk), "code": other.code_id}
    session.save()

    response = client.post(f"/invitations/{token}/code/", {"code": mailed_code("mallory@evil.test")})

    assert response.status_code == 410 and "you proved another address" in response.content.decode()
    assert not Developer.objects.filter(email__in=[INVITEE, "mallory@evil.test"]).exists()
    assert services.invitation_for(token)  # still usable by the invited address


def test_the_code_page_needs_the_invitation_s_code(client, invited):
    *_, token = invited
    assert client.get(f"/invitations/{token}/code/")["Location"] == f"/invitations/{token}/"
    client.post(f"/invitations/{token}/")

    wrong = client.post(f"/invitations/{token}/code/", {"code": "12345x"})

    assert wrong.status_code == 400
    assert not Developer.objects.filter(email=INVITEE).exists()


def test_no_free_seat_says_ask_the_owner_and_the_invitation_stays_usable(client, invited):
    organization, _, invitation, token = invited
    DeveloperFactory.create_batch(2, organization=organization)  # with the owner (a factory key): 3 of 3 held

    refused = _accept(client, token)

    assert refused.status_code == 409 and "ask your owner to add" in refused.content.decode()
    assert services.invitation_for(token).pk == invitation.pk
    services.set_seats(organization=organization, max_seats=4)
    retried = client.post(f"/invitations/{token}/code/", {"retry": "1"})  # the address is proven already
    assert retried.status_code == 200 and "hc_live_" in retried.content.decode()
    assert Developer.objects.get(email=INVITEE).holds_seat


def test_invitation_tokens_are_redacted_from_log_lines():
    assert redact("GET /invitations/AbC-123_x/code/ 200") == "GET /invitations/[redacted]/code/ 200"
    assert redact("Gone: /invitations/AbC-123_x/") == "Gone: /invitations/[redacted]/"
    assert redact("POST /org/invitations/0b9c/ 302") == "POST /org/invitations/0b9c/ 302"  # an id, not a secret
