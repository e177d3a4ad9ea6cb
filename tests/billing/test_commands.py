"""`manage.py stripe_webhook_endpoint` and `manage.py orgs sync-stripe`."""

from __future__ import annotations

import json
import re
import threading
import uuid
from io import StringIO

import pytest
import stripe
from django.core import checks
from django.core.management import CommandError, call_command
from django.db import connection
from djstripe.models import WebhookEndpoint

from tests.factories import OrganizationFactory
from tests.support import stripe_data as sd
from tests.support.stripe import WEBHOOK_SECRET

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
        "stripe_webhook_endpoint", "--secret", "whsec_siteSecret111111111", "--url", "https://BO.Example.com/"
    )
    assert again.strip() == site.strip()  # host names ignore case
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
def test_webhook_endpoint_defaults_to_the_public_url_and_prints_the_url_to_forward_to(settings):
    # `PORT=8123 make run` serves (and sets HOTCROSS_PUBLIC_URL to) http://127.0.0.1:8123: no second endpoint on 8000.
    settings.HOTCROSS_PUBLIC_URL = "http://127.0.0.1:8123"
    out, err = run("stripe_webhook_endpoint", "--secret", "whsec_listenSecret0000000", "--print-url")
    endpoint = WebhookEndpoint.objects.get()
    assert out.strip() == endpoint.url
    assert re.fullmatch(r"http://127\.0\.0\.1:8123/stripe/webhook/[0-9a-f-]{36}/", endpoint.url)
    assert "Secret0000" not in out + err

    path, _ = run("stripe_webhook_endpoint", "--secret", "whsec_listenSecret1111111")
    assert f"http://127.0.0.1:8123{path.strip()}" == endpoint.url
    assert WebhookEndpoint.objects.count() == 1


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
    assert out.strip() == f"{org.name}: active, 4 seats (subscription {sub['id']})."
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


@pytest.mark.django_db
def test_sync_stripe_with_a_malformed_key_names_the_setting_and_never_shows_the_key(stripe_stub, settings):
    org = OrganizationFactory(name="Acme", stripe_customer_id="cus_acme", subscription_status="active")
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_short-Secret!"
    with pytest.raises(CommandError) as failed:
        run("orgs", "sync-stripe", str(org.id))
    assert str(failed.value) == (
        "STRIPE_TEST_SECRET_KEY is not a Stripe test-mode secret key (sk_test_… or rk_test_…); its value is not shown."
    )
    assert stripe_stub.requests == []


@pytest.mark.django_db  # dj-stripe's own checks read its webhook endpoints
def test_system_checks_report_an_unusable_stripe_key_without_showing_it(settings):
    settings.STRIPE_LIVE_SECRET_KEY = "pk_live_publishableNotSecret000000000000"  # a publishable key, pasted by mistake
    messages = [m for m in checks.run_checks() if m.id == "accounts.E101"]
    assert [m.msg for m in messages] == [
        "STRIPE_LIVE_SECRET_KEY is set but is not a Stripe live-mode secret key; its value is not shown."
    ]
    assert "publishable" not in f"{messages[0].msg} {messages[0].hint}"

    settings.STRIPE_LIVE_SECRET_KEY = ""
    assert not [m for m in checks.run_checks() if m.id == "accounts.E101"]  # unset is allowed (development)
    settings.STRIPE_LIVE_MODE = True
    deploy = [m for m in checks.run_checks(include_deployment_checks=True) if m.id.startswith("accounts.")]
    assert [m.id for m in deploy] == ["accounts.W101"]
    assert "STRIPE_LIVE_SECRET_KEY is empty" in deploy[0].msg


@pytest.mark.django_db(transaction=True)
def test_sync_stripe_and_a_webhook_at_once_end_in_the_state_fetched_last(webhook, stripe_stub, plan_and_customer):
    """sync-stripe reads Stripe's state, then stalls; meanwhile the state changes and a webhook brings the newer one.
    The sync must not write its older state over the webhook's."""
    cus, sub = plan_and_customer
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=4)
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            run("orgs", "sync-stripe", str(org.id))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    statuses: list[int] = []

    def deliver(event: dict) -> None:
        try:
            statuses.append(webhook.deliver(event).status_code)
        finally:
            connection.close()

    six = sd.with_quantities(sub, 6)
    with stripe_stub.holding("/v1/subscriptions") as hold:
        syncing = threading.Thread(target=sync)
        syncing.start()
        assert hold.arrived.wait(timeout=20), "sync-stripe never listed the subscriptions"
        stripe_stub.put(six)
        delivering = threading.Thread(target=deliver, args=(sd.event("customer.subscription.updated", six),))
        delivering.start()
        delivering.join(timeout=1.5)  # without the organization lock it would finish here, before the sync
        hold.release()
        syncing.join(timeout=30)
        delivering.join(timeout=30)

    assert errors == []
    assert statuses == [200]
    org.refresh_from_db()
    assert (org.subscription_status, org.max_seats) == ("active", 6)


@pytest.fixture
def plan_and_customer(stripe_stub):
    prod = sd.product()
    seat_price = sd.price(prod)
    cus = sd.customer()
    sub = sd.subscription(cus, [(seat_price, 2)], status="active")
    stripe_stub.put(prod, seat_price, cus, sub)
    return cus, sub


def test_webhook_fixture_uses_the_command(webhook):
    assert PATH.match(webhook.path)
    assert WebhookEndpoint.objects.get().secret == WEBHOOK_SECRET
