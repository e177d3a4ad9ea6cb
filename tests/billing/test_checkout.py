"""Self-service billing with Stripe (issue 30): the organization's Stripe customer made once and linked before
Checkout, a finished Checkout brought home idempotently and only for its own organization, and the billing page with
the Customer Portal (owners only) — all against the local Stripe stub."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from django.test import Client

from accounts.billing import checkout
from accounts.choices import Role
from accounts.exceptions import InvalidInput
from accounts.models import Organization
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support import stripe_data as sd
from tests.support.selfserve import browser_get, browser_post, deliver, make_signup_plan, sign_in
from tests.support.webhooks import refresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def signup_plan(stripe_stub):
    return make_signup_plan(stripe_stub)


def _unpaid(signup_plan, **fields):
    plan, _ = signup_plan
    values = {"stripe_customer_id": None, "subscription_status": "incomplete", "max_seats": 3, "plan": plan}
    return OrganizationFactory(billing_email="owner@acme.test", **{**values, **fields})


def _customer_posts(stripe_stub):
    return [r for r in stripe_stub.requests if r.method == "POST" and r.path == "/v1/customers"]


# --- the customer -----------------------------------------------------------------------------------------------------


def test_the_customer_is_made_once_with_the_organization_s_metadata_and_linked(stripe_stub, signup_plan):
    organization = _unpaid(signup_plan)

    first = checkout.ensure_customer(organization)
    again = checkout.ensure_customer(Organization.objects.get(pk=organization.pk))

    assert first == again == refresh(organization).stripe_customer_id
    (post,) = _customer_posts(stripe_stub)
    assert post.idempotency_key == f"hotcross-customer-{organization.pk}"
    customer = stripe_stub.get(first)
    assert customer["metadata"] == {"hotcross_organization": str(organization.pk)}
    assert customer["email"] == "owner@acme.test"


def test_a_lost_answer_retried_makes_no_second_customer(stripe_stub, signup_plan):
    organization = _unpaid(signup_plan)
    stripe_stub.fail_next("/v1/customers", 500, after_accepting=True)  # made at Stripe, the answer lost

    with pytest.raises(checkout.StripeUnavailable):
        checkout.ensure_customer(organization)
    assert refresh(organization).stripe_customer_id is None
    customer_id = checkout.ensure_customer(organization)

    assert [c["id"] for c in stripe_stub.customers()] == [customer_id]


def test_an_organization_with_a_customer_keeps_it(stripe_stub, signup_plan):
    organization = _unpaid(signup_plan, stripe_customer_id="cus_existing")

    assert checkout.ensure_customer(organization) == "cus_existing"
    assert _customer_posts(stripe_stub) == []


def test_checkout_needs_a_plan_sold_at_sign_up(stripe_stub, signup_plan):
    organization = _unpaid(signup_plan, plan=None)

    with pytest.raises(InvalidInput):
        checkout.create_checkout(organization, success_url="http://x/ok", cancel_url="http://x/no")
    assert stripe_stub.requests == []


# --- a finished Checkout ----------------------------------------------------------------------------------------------


def _paid_checkout(stripe_stub, organization, quantity=4):
    url = checkout.create_checkout(
        organization, success_url="http://testserver/done/?s={CHECKOUT_SESSION_ID}", cancel_url="http://x/no"
    )
    status, location, _ = browser_post(url, {"quantity": str(quantity)})
    assert status == 303
    return url.rsplit("/", 1)[1], location


def test_completing_a_checkout_twice_has_one_effect(stripe_stub, signup_plan):
    organization = _unpaid(signup_plan)
    session_id, location = _paid_checkout(stripe_stub, organization, 4)
    assert location == f"http://testserver/done/?s={session_id}"

    first = checkout.complete_checkout(session_id)
    second = checkout.complete_checkout(session_id)

    assert first.pk == second.pk == organization.pk
    organization = refresh(organization)
    assert (organization.subscription_status, organization.max_seats) == ("active", 4)
    assert organization.subscription_id == stripe_stub.checkout_sessions()[0]["subscription"]


def test_an_unfinished_checkout_changes_nothing(stripe_stub, signup_plan):
    organization = _unpaid(signup_plan)
    url = checkout.create_checkout(organization, success_url="http://x/ok", cancel_url="http://x/no")
    status, page = browser_get(url)
    assert status == 200 and "Pay" in page

    assert checkout.complete_checkout(url.rsplit("/", 1)[1]).pk == organization.pk
    assert refresh(organization).subscription_status == "incomplete"


def test_the_checkout_page_keeps_the_quantity_within_the_bounds(stripe_stub, signup_plan):
    organization = _unpaid(signup_plan)
    url = checkout.create_checkout(organization, success_url="http://x/ok", cancel_url="http://x/no")

    status, _, page = browser_post(url, {"quantity": "11"})

    assert status == 400 and "Choose 2 to 10" in page
    assert stripe_stub.events == []


def test_a_session_of_another_organization_s_customer_is_ignored(stripe_stub, signup_plan):
    ours = _unpaid(signup_plan)
    session_id, _ = _paid_checkout(stripe_stub, ours)
    impostor = _unpaid(signup_plan)
    Organization.objects.filter(pk=ours.pk).update(stripe_customer_id=None)
    Organization.objects.filter(pk=impostor.pk).update(stripe_customer_id=stripe_stub.customers()[0]["id"])

    assert checkout.complete_checkout(session_id) is None  # the session names `ours`; the customer is now another's

    assert refresh(impostor).subscription_status == "incomplete"
    assert refresh(ours).subscription_status == "incomplete"


def test_a_session_of_another_organization_than_the_one_expected_writes_nothing(stripe_stub, signup_plan):
    ours = _unpaid(signup_plan)
    session_id, _ = _paid_checkout(stripe_stub, ours)
    other = _unpaid(signup_plan)

    assert checkout.complete_checkout(session_id, of=other) is None

    assert refresh(ours).subscription_status == "incomplete" and refresh(other).subscription_status == "incomplete"
    assert checkout.complete_checkout(session_id, of=ours).pk == ours.pk
    assert refresh(ours).subscription_status == "active"


@pytest.mark.parametrize("session_id", ["", "cs_", "pi_123", "cs_test_x/../../v1/customers", "cs_" + "a" * 300])
def test_a_session_id_that_cannot_be_one_asks_stripe_nothing(stripe_stub, session_id):
    with pytest.raises(InvalidInput):
        checkout.complete_checkout(session_id)
    assert stripe_stub.requests == []


def test_an_unknown_session_is_invalid_input(stripe_stub):
    with pytest.raises(InvalidInput):
        checkout.complete_checkout("cs_test_unknown")


def test_the_checkout_completed_webhook_of_a_foreign_session_is_accepted_and_ignored(stripe_stub, webhook, plan):
    _, seat_price, cus = plan
    organization = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="incomplete")
    session = {
        "id": "cs_test_foreign",
        "object": "checkout.session",
        "customer": cus["id"],
        "client_reference_id": "someone-else",
        "metadata": {},
        "mode": "subscription",
        "status": "complete",
        "subscription": None,
        "livemode": False,
        "created": sd.NOW,
    }
    stripe_stub.put(session, sd.subscription(cus, [(seat_price, 9)], status="active"))

    assert webhook.deliver(sd.event("checkout.session.completed", session)).status_code == 200

    assert refresh(organization).subscription_status == "incomplete"


# --- the billing page and the Customer Portal ------------------------------------------------------------------------


@pytest.fixture
def paying(stripe_stub, signup_plan):
    """An active organization paying 3 seats through a subscription on the stub, with an owner (holding a seat), an
    admin and a member; and another organization's owner."""
    plan, price = signup_plan
    cus = sd.customer("owner@acme.test")
    subscription = sd.subscription(cus, [(price, 3)], status="active")
    stripe_stub.put(cus, subscription)
    stripe_stub.base_lines[cus["id"]] = [{"description": "3 × Team seat", "quantity": 3, "amount": 6000}]
    organization = OrganizationFactory(
        name="Acme", stripe_customer_id=cus["id"], max_seats=3, plan=plan, subscription_id=subscription["id"]
    )
    owner = DeveloperFactory(organization=organization, role=Role.OWNER)
    admin = DeveloperFactory(organization=organization, role=Role.ADMIN, api_key_hash=None, api_key_prefix="")
    member = DeveloperFactory(organization=organization, role=Role.MEMBER)
    other = DeveloperFactory(organization=OrganizationFactory(name="Globex"), role=Role.OWNER)
    return organization, owner, admin, member, other


def test_the_owner_sees_plan_seats_status_and_the_upcoming_invoice(paying):
    _, owner, *_ = paying

    page = sign_in(Client(), owner).get("/org/billing/")

    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="plan">Team<' in body
    assert 'id="seats-paid">3<' in body and 'id="seats-held">2<' in body  # the owner and the member hold keys
    assert 'id="subscription-status">Active<' in body
    assert "3 × Team seat" in body and "60.00 USD" in body
    assert 'id="portal-form"' in body


def test_an_admin_sees_the_page_but_cannot_open_the_portal(paying, stripe_stub):
    _, _, admin, *_ = paying
    client = sign_in(Client(), admin)

    page = client.get("/org/billing/")
    refused = client.post("/org/billing/portal/")

    assert page.status_code == 200 and 'id="portal-form"' not in page.content.decode()
    assert "Only the organization" in page.content.decode()
    assert refused.status_code == 403 and "Only the organization" in refused.content.decode()
    assert not [r for r in stripe_stub.requests if r.path == "/v1/billing_portal/sessions"]


def test_a_member_and_nobody_are_refused(paying):
    _, _, _, member, _ = paying
    client = sign_in(Client(), member)

    assert client.get("/org/billing/").status_code == 403
    assert client.post("/org/billing/portal/").status_code == 403
    assert Client().get("/org/billing/").status_code == 302  # sign in first


def test_another_organization_s_owner_sees_only_their_own(paying):
    *_, other = paying

    body = sign_in(Client(), other).get("/org/billing/").content.decode()

    assert "Globex" in body and "Acme" not in body and "3 × Team seat" not in body


def test_the_owner_changes_seats_in_the_portal_and_the_webhook_brings_them_back(paying, stripe_stub, webhook):
    organization, owner, *_ = paying
    client = sign_in(Client(), owner)

    response = client.post("/org/billing/portal/")

    assert response.status_code == 303
    portal = response["Location"]
    assert portal.startswith(f"{stripe_stub.url}/portal/bps_")
    status, page = browser_get(portal)
    assert status == 200 and "Quantity: 3" in page
    status, location, _ = browser_post(portal, {"quantity": "7"})
    assert (status, location) == (303, "http://testserver/org/billing/")
    assert deliver(webhook, stripe_stub.events) == [200]
    assert refresh(organization).max_seats == 7
    assert 'id="seats-paid">7<' in client.get("/org/billing/").content.decode()


def test_stripe_not_answering_says_so_on_the_page(paying, stripe_stub):
    _, owner, *_ = paying
    client = sign_in(Client(), owner)
    stripe_stub.fail_next("/v1/invoices/create_preview", 500)
    stripe_stub.fail_next("/v1/billing_portal/sessions", 500)

    page = client.get("/org/billing/")
    portal = client.post("/org/billing/portal/")

    assert page.status_code == 200 and "not available now" in page.content.decode()
    assert portal.status_code == 503 and "Stripe did not answer, try again" in portal.content.decode()
    assert client.get("/org/billing/portal/").status_code == 405


def test_the_stub_posts_signed_events_to_a_webhook_target(stripe_stub, signup_plan):
    received: list[tuple[str, str]] = []

    class Target(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        stripe_stub.deliver_webhooks_to(f"http://127.0.0.1:{server.server_address[1]}/hook/", "whsec_target")
        _paid_checkout(stripe_stub, _unpaid(signup_plan), 3)
    finally:
        server.shutdown()
        server.server_close()

    assert stripe_stub.delivered == [200, 200]
    types = []
    for body, header in received:
        stripe.WebhookSignature.verify_header(body, header, "whsec_target", 300)
        types.append(json.loads(body)["type"])
    assert types == ["customer.subscription.created", "checkout.session.completed"]
