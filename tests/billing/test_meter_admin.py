"""Usage billing on the organization's admin page (and the read-only list of meter reports)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.urls import reverse

from accounts.billing import usage
from accounts.models import MeterReport
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support import stripe_data
from tests.support.meters import HOUR, billed_org, calls, make_plan, now_hour
from tests.support.stripe_stub import INVOICE_PREVIEW, METER_EVENTS, StripeStub

pytestmark = pytest.mark.django_db


def page(client: Any, organization: Any) -> str:
    response = client.get(reverse("admin:accounts_organization_change", args=[organization.pk]))
    assert response.status_code == 200
    return response.content.decode()


def metered_org(stub: StripeStub | None = None) -> Any:
    customer = stripe_data.customer()
    if stub is not None:
        stub.put(customer)
        stub.base_lines[customer["id"]] = [{"description": "Base fee", "quantity": 1, "amount": 4900}]
        stub.unit_amounts["hotcross_calls"] = 5
    h = now_hour()
    organization = billed_org(make_plan(name="Usage Pro"), h - 4 * HOUR, stripe_customer_id=customer["id"])
    developer = DeveloperFactory(organization=organization)
    calls(developer, h - 3 * HOUR, 3)
    calls(developer, h - 2 * HOUR, 4)
    return organization


def test_the_page_shows_metered_usage_reported_up_to_pending_the_error_and_the_invoice(
    admin_client: Any, stripe_stub: StripeStub, settings: Any
) -> None:
    settings.HOTCROSS_METER_TRIES = 1
    organization = metered_org(stripe_stub)
    stripe_stub.fail_next(METER_EVENTS, 200, 400)  # the second interval is refused
    h = now_hour()
    usage.report_usage(h + datetime.timedelta(minutes=10), sleep=lambda s: None)

    html = page(admin_client, organization)

    assert "Usage billing (Usage Pro)" in html
    reported = usage.usage_billing_status(organization).period_reported
    assert f"<td>{reported}</td>" in html
    assert f"{h - 2 * HOUR:%Y-%m-%d %H:%M} UTC" in html  # reported up to: the refused interval's start
    assert "1 report (4)" in html
    assert "HTTP 400" in html
    # The upcoming invoice, drawn by Stripe (the stub) from what it accepted: 3 calls × 5 cents + the base fee.
    assert "Base fee" in html and "49.00 USD" in html
    start = html.index("Upcoming invoice")
    assert "3 × hotcross_calls" in html and "0.15 USD" in html, html[start : start + 1500]
    assert "Total 49.15 USD" in html
    assert f"?organization__id__exact={organization.pk}" in html


def test_stripe_unreachable_is_a_message_not_a_500(admin_client: Any) -> None:
    organization = metered_org()  # tests' Stripe host refuses connections

    html = page(admin_client, organization)

    assert "The upcoming invoice could not be read: could not connect to" in html
    assert "Usage billing (Usage Pro)" in html


def test_a_slow_stripe_is_cut_short_by_the_timeout(admin_client: Any, stripe_stub: StripeStub, settings: Any) -> None:
    settings.STRIPE_TIMEOUT_SECONDS = 0.5
    organization = metered_org(stripe_stub)
    with stripe_stub.holding(INVOICE_PREVIEW) as hold:
        html = page(admin_client, organization)
        assert hold.arrived.is_set()
    assert "The upcoming invoice could not be read" in html


def test_without_a_key_the_page_says_which_setting_is_missing(admin_client: Any, settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    html = page(admin_client, metered_org())
    assert "The upcoming invoice is not shown: No Stripe API key configured: set STRIPE_TEST_SECRET_KEY." in html


def test_organizations_not_billed_by_usage_have_no_section_and_stripe_is_not_asked(
    admin_client: Any, stripe_stub: StripeStub
) -> None:
    organization = OrganizationFactory(plan=make_plan("none"))
    html = page(admin_client, organization)
    assert "Usage billing" not in html
    assert stripe_stub.requested() == []


def test_the_meter_reports_list_is_read_only(admin_client: Any, stripe_stub: StripeStub) -> None:
    organization = metered_org(stripe_stub)
    usage.report_usage(now_hour() + datetime.timedelta(minutes=10), sleep=lambda s: None)
    report = MeterReport.objects.first()

    listing = admin_client.get(
        reverse("admin:accounts_meterreport_changelist") + f"?organization__id__exact={organization.pk}"
    )
    assert listing.status_code == 200 and report.identifier in listing.content.decode()
    assert admin_client.get(reverse("admin:accounts_meterreport_add")).status_code == 403
    detail = admin_client.get(reverse("admin:accounts_meterreport_change", args=[report.pk]))
    assert detail.status_code == 200 and 'name="value"' not in detail.content.decode()
    response = admin_client.post(reverse("admin:accounts_meterreport_delete", args=[report.pk]), {"post": "yes"})
    assert response.status_code == 403 and MeterReport.objects.filter(pk=report.pk).exists()
