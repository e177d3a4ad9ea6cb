"""The plan from Stripe (issue 16, step 3): `hotcross_plan=<code>` in the subscribed price's metadata, else its
product's, applied by the signed webhook's path; it reaches `/mcp` within a second. Unknown code: plan kept, logged,
and said in the organization's admin history."""

from __future__ import annotations

import logging
import time

import anyio
import pytest
from django.contrib.admin.models import LogEntry

from accounts.billing.prices import PriceMetadataError, plan_code
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory
from tests.support import stripe_data as sd
from tests.support.mcp import http_client

pytestmark = pytest.mark.django_db(transaction=True)


def subscribe(webhook, stripe_stub, cus, price) -> None:
    sub = sd.subscription(cus, [(price, 2)], status="active")
    stripe_stub.put(sub)
    assert webhook.deliver(sd.event("customer.subscription.updated", sub)).status_code == 200


def test_price_metadata_else_product_metadata_names_the_plan():
    assert plan_code([{"price": {"id": "p1", "metadata": {"hotcross_plan": "pro"}}}]) == "pro"
    product = {"id": "prod_1", "metadata": {"hotcross_plan": "team"}}
    assert plan_code([{"price": {"id": "p1", "metadata": {}, "product": product}}]) == "team"
    assert plan_code([{"price": {"id": "p1", "metadata": {"hotcross_plan": "pro"}, "product": product}}]) == "pro"
    assert plan_code([{"price": {"id": "p1", "metadata": {}}}]) is None
    with pytest.raises(PriceMetadataError, match="several plans"):
        plan_code(
            [
                {"price": {"id": "p1", "metadata": {"hotcross_plan": "pro"}}},
                {"price": {"id": "p2", "metadata": {"hotcross_plan": "team"}}},
            ]
        )


def test_a_signed_webhook_changes_the_plan_and_mcp_follows_within_a_second(webhook, stripe_stub, mcp_http):
    PlanFactory(code="pro", name="Pro")
    small = PlanFactory(code="small", name="Small", allows_all_tools=False, allowed_tools="whoami")
    prod = sd.product()
    price = sd.price(prod, {"hotcross_plan": "pro"})
    cus = sd.customer()
    stripe_stub.put(prod, price, cus)
    org = OrganizationFactory(stripe_customer_id=cus["id"], plan=small)
    developer = DeveloperFactory(organization=org)

    async def tools() -> set[str]:
        async with http_client(mcp_http.url, developer.plain_key) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    assert anyio.run(tools) == {"whoami"}
    subscribe(webhook, stripe_stub, cus, price)
    delivered = time.monotonic()
    while "usage" not in anyio.run(tools):
        assert time.monotonic() - delivered < 3, "the plan from Stripe did not reach /mcp"
        time.sleep(0.05)
    assert time.monotonic() - delivered <= 1.5
    org.refresh_from_db()
    assert org.plan.code == "pro"
    assert LogEntry.objects.filter(object_id=str(org.pk), change_message="Plan: small → pro (from Stripe).").exists()


def test_the_products_metadata_names_the_plan_when_the_price_does_not(webhook, stripe_stub):
    PlanFactory(code="team", name="Team")
    prod = sd.product()
    prod["metadata"] = {"hotcross_plan": "team"}
    price = sd.price(prod)
    cus = sd.customer()
    stripe_stub.put(prod, price, cus)
    org = OrganizationFactory(stripe_customer_id=cus["id"])
    subscribe(webhook, stripe_stub, cus, price)
    org.refresh_from_db()
    assert org.plan.code == "team"


def test_an_unknown_code_keeps_the_plan_logs_a_warning_and_tells_staff(webhook, stripe_stub, caplog):
    kept = PlanFactory(code="team", name="Team")
    prod = sd.product()
    price = sd.price(prod, {"hotcross_plan": "platinum"})
    cus = sd.customer()
    stripe_stub.put(prod, price, cus)
    org = OrganizationFactory(stripe_customer_id=cus["id"], plan=kept, max_seats=1)
    with caplog.at_level(logging.WARNING):
        subscribe(webhook, stripe_stub, cus, price)
    org.refresh_from_db()
    assert org.plan == kept
    assert org.max_seats == 2  # the rest of the subscription still applies
    assert any("unknown plan" in record.getMessage() for record in caplog.records)
    history = LogEntry.objects.filter(object_id=str(org.pk)).values_list("change_message", flat=True)
    assert any("'platinum'" in message and "does not exist" in message for message in history)
