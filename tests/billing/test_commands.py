"""`manage.py stripe_webhook_endpoint` and `manage.py orgs sync-stripe`."""

from __future__ import annotations

import json
import re
import uuid
from io import StringIO

import pytest
import stripe
from django.core.management import CommandError, call_command
from djstripe.models import WebhookEndpoint

from tests.billing import stripe_data as sd
from tests.billing.conftest import WEBHOOK_SECRET
from tests.factories import OrganizationFactory

PATH = re.compile(r"^/stripe/webhook/([0-9a-f-]{36})/$")


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- stripe_webhook_endpoint ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_endpoint_is_created_then_updated_and_its_secret_never_printed():
    out, err = run("stripe_webhook_endpoint", "--secret", "whsec_firstSecret00000000")
    path = out.strip()
    endpoint_uuid = uuid.UUID(PATH.match(path).group(1))
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.djstripe_uuid == endpoint_uuid
    assert endpoint.secret == "whsec_firstSecret00000000"
    assert endpoint.url == f"http://127.0.0.1:8000{path}"
    assert endpoint.livemode is False
    assert "Created the test-mode webhook endpoint" in err
    assert f"Stripe must post to http://127.0.0.1:8000{path}" in err
    assert "customer.subscription.updated" in err

    out, err = run("stripe_webhook_endpoint", "--secret", "whsec_secondSecret0000000")
    assert out.strip() == path
    assert "Updated" in err
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == "whsec_secondSecret0000000"
    assert "Secret0000" not in out + err


@pytest.mark.django_db
def test_webhook_endpoint_per_site_and_by_full_url():
    local, _ = run("stripe_webhook_endpoint", "--secret", "whsec_localSecret00000000")
    site, _ = run("stripe_webhook_endpoint", "--secret", "whsec_siteSecret000000000", "--url", "https://bo.example.com")
    assert site.strip() != local.strip()
    again, _ = run(
        "stripe_webhook_endpoint", "--secret", "whsec_siteSecret111111111", "--url", "https://bo.example.com/"
    )
    assert again.strip() == site.strip()
    assert WebhookEndpoint.objects.count() == 2
    assert (
        WebhookEndpoint.objects.get(url=f"https://bo.example.com{site.strip()}").secret == "whsec_siteSecret111111111"
    )

    chosen = uuid.uuid4()
    full = f"https://bo.example.com/stripe/webhook/{chosen}/"
    named, _ = run("stripe_webhook_endpoint", "--secret", "whsec_namedSecret00000000", "--url", full)
    assert named.strip() == f"/stripe/webhook/{chosen}/"
    assert WebhookEndpoint.objects.get(djstripe_uuid=chosen).url == full


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--secret", "not-a-secret"], "must look like whsec_"),
        (["--secret", "whsec_"], "must look like whsec_"),
        (["--secret", "whsec_goodSecret0000", "--url", "ftp://bo.example.com"], "is not an http(s) URL"),
        (["--secret", "whsec_goodSecret0000", "--url", "https://bo.example.com/hooks"], "Give the site's address"),
    ],
)
def test_webhook_endpoint_refuses_bad_input_and_writes_nothing(args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        run("stripe_webhook_endpoint", *args)
    assert not WebhookEndpoint.objects.exists()


# --- orgs sync-stripe -----------------------------------------------------------------------------------------------


@pytest.fixture
def customer_with_subscription(stripe_stub):
    prod = sd.product()
    seat_price = sd.price(prod)
    cus = sd.customer()
    sub = sd.subscription(cus, [(seat_price, 4)], status="active")
    stripe_stub.put(prod, seat_price, cus, sub)
    return cus, sub, seat_price


@pytest.mark.django_db
def test_sync_stripe_applies_stripe_s_current_state_after_missed_webhooks(stripe_stub, customer_with_subscription):
    cus, sub, _ = customer_with_subscription
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="past_due", max_seats=1)

    out, _ = run("orgs", "sync-stripe", str(org.id))

    org.refresh_from_db()
    assert (org.subscription_status, org.subscription_id, org.max_seats) == ("active", sub["id"], 4)
    assert out.strip() == f"{org.name}: active, 4 seat(s) (subscription {sub['id']})."
    assert f"/v1/subscriptions?customer={cus['id']}" not in stripe_stub.requested()  # query is not in the path
    assert any(r.query.get("customer") == [cus["id"]] for r in stripe_stub.requests)

    out, _ = run("orgs", "sync-stripe", str(org.id), "--json")  # again: nothing changes
    data = json.loads(out)
    assert data["subscription_status"] == "active"
    assert data["max_seats"] == 4
    assert data["subscription_id"] == sub["id"]
    assert data["stripe_problem"] is None


@pytest.mark.django_db
def test_sync_stripe_for_every_organization_reports_the_ones_that_failed(stripe_stub, customer_with_subscription):
    cus, _, seat_price = customer_with_subscription
    other = sd.customer("other@example.com")
    canceled = sd.subscription(other, [(seat_price, 2)], status="canceled")
    stripe_stub.put(other, canceled)
    good = OrganizationFactory(name="A good", stripe_customer_id=cus["id"], subscription_status="trialing")
    also = OrganizationFactory(name="B also", stripe_customer_id=other["id"], subscription_status="active")
    gone = OrganizationFactory(name="C gone", stripe_customer_id="cus_deletedInStripe", subscription_status="active")
    no_customer = OrganizationFactory(name="D manual", stripe_customer_id=None, subscription_status="active")

    with pytest.raises(CommandError) as failed:
        run("orgs", "sync-stripe")

    assert "1 of 3 organization(s) could not be synced" in str(failed.value)
    assert "C gone" in str(failed.value)
    assert "No such customer: 'cus_deletedInStripe'" in str(failed.value)
    for org in (good, also, gone, no_customer):
        org.refresh_from_db()
    assert good.subscription_status == "active"
    assert also.subscription_status == "canceled"
    assert gone.subscription_status == "active"  # left alone
    assert no_customer.subscription_status == "active"


@pytest.mark.django_db
def test_sync_stripe_with_no_subscription_in_stripe_changes_nothing(stripe_stub):
    cus = sd.customer()
    stripe_stub.put(cus)
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=3)

    _, err = run("orgs", "sync-stripe", str(org.id))

    org.refresh_from_db()
    assert (org.subscription_status, org.max_seats) == ("active", 3)
    assert f"Stripe has no subscription for customer {cus['id']}; nothing was changed." in err


@pytest.mark.django_db
def test_sync_stripe_refuses_an_organization_without_a_customer_and_an_unknown_id(stripe_stub):
    org = OrganizationFactory(name="Manual Ltd", stripe_customer_id=None)
    with pytest.raises(CommandError, match="Manual Ltd has no Stripe customer id"):
        run("orgs", "sync-stripe", str(org.id))
    with pytest.raises(CommandError, match="No organization has the id"):
        run("orgs", "sync-stripe", str(uuid.uuid4()))
    assert stripe_stub.requests == []


@pytest.mark.django_db
def test_sync_stripe_when_stripe_cannot_be_reached_is_one_clear_error(settings, monkeypatch):
    # No stub: the tests' STRIPE_API_HOST refuses connections.
    monkeypatch.setattr(stripe, "max_network_retries", 0)
    org = OrganizationFactory(name="Acme", stripe_customer_id="cus_acme", subscription_status="active")
    with pytest.raises(CommandError) as failed:
        run("orgs", "sync-stripe", str(org.id))
    assert (
        str(failed.value)
        == "Stripe did not answer for Acme (customer cus_acme): could not connect to http://127.0.0.1:9."
    )
    settings.STRIPE_TEST_SECRET_KEY = ""
    with pytest.raises(CommandError, match="No Stripe API key configured"):
        run("orgs", "sync-stripe", str(org.id))
    org.refresh_from_db()
    assert org.subscription_status == "active"


def test_webhook_fixture_uses_the_command(webhook):
    assert PATH.match(webhook.path)
    assert WebhookEndpoint.objects.get().secret == WEBHOOK_SECRET
