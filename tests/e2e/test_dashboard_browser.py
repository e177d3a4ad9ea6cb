"""A staff member logs in and lands on the dashboard: seats paid and held, organizations by status with those that
need attention, calls today and this month with the 30-day chart, failed webhook deliveries; a count opens the list
it counts. Saves test-artifacts/dashboard.png."""

import datetime

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from djstripe.models import WebhookEventTrigger

from accounts.models import SubscriptionStatus
from tests.factories import DeveloperFactory, OrganizationFactory, UsageEventFactory
from tests.support.browser import ARTIFACTS

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOT = ARTIFACTS.parent / "dashboard.png"


def test_staff_land_on_the_dashboard(browser_page):
    page = browser_page
    User.objects.create_superuser("boss", "boss@hotcross.test", "pw-boss-123")
    acme = OrganizationFactory(name="Acme", subscription_status=SubscriptionStatus.ACTIVE, max_seats=5)
    bolt = OrganizationFactory(name="Bolt", subscription_status=SubscriptionStatus.ACTIVE, max_seats=1)
    OrganizationFactory(name="Cove", subscription_status=SubscriptionStatus.TRIALING, max_seats=3)
    OrganizationFactory(name="Dune", subscription_status=SubscriptionStatus.PAST_DUE, max_seats=2)
    OrganizationFactory(name="Fern", subscription_status=SubscriptionStatus.CANCELED, max_seats=4)
    ada, grace = DeveloperFactory.create_batch(2, organization=acme)
    DeveloperFactory.create_batch(2, organization=bolt)  # one seat, two holders: over the limit
    now = timezone.now()
    for days_ago in (0, 0, 0, 1, 2, 2, 5, 9, 9, 9, 14, 20, 27):
        UsageEventFactory(developer=ada, created_at=now - datetime.timedelta(days=days_ago, minutes=1))
    UsageEventFactory(developer=grace, created_at=now - datetime.timedelta(minutes=1), ok=False)
    WebhookEventTrigger.objects.create(remote_ip="127.0.0.1", headers={}, body="{}", valid=False, processed=False)

    page.goto("/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-boss-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard")

    # Seats: held in good standing (Acme 2, Bolt 1 of its 2) of those paid (Acme 5, Bolt 1, Cove 3).
    assert page.inner_text("[data-figure=seats-held]") == "3"
    assert page.inner_text("[data-figure=seats-paid]") == "9"
    assert "1 refused seat holder" in page.inner_text("#dashboard-seats")
    assert page.inner_text("[data-figure=calls-today]") == "4"
    assert page.inner_text("[data-figure=webhooks-failed]") == "1"
    assert page.inner_text("[data-figure=over-seat-limit]") == "1"
    organizations = page.locator("#dashboard-organizations")
    assert organizations.locator("tr.hc-alert").count() == 3  # past due, canceled, over the limit
    assert page.locator("#dashboard-calls svg.hc-chart rect").count() > 8
    # The chart uses the card's width.
    card = page.locator("#dashboard-calls").bounding_box()
    assert page.locator("#dashboard-calls svg").bounding_box()["width"] >= card["width"] - 30
    # Hotcross comes before dj-stripe's section.
    captions = [text.lower() for text in page.locator("#content-main .module caption").all_inner_texts()]
    assert captions[0].startswith("organizations and developers")
    # ...and dj-stripe's models are one folded section below the others (issue 31)
    fold = page.locator("#stripe-models")
    assert fold.locator("summary").inner_text().startswith("Stripe (synced data)")
    assert fold.get_attribute("open") is None
    assert fold.bounding_box()["y"] > page.locator("#content-main .module caption").first.bounding_box()["y"]
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A count opens the list it counts.
    page.locator("[data-figure=over-seat-limit]").click()
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").all_inner_texts()[0].split()[0] == "Bolt"
    assert page.locator("#result_list tbody tr").count() == 1
