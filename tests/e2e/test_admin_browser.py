"""A staff member runs the back office in a real browser: log in, create an organization, add a developer and read
the key once, fail to add beyond the seats, set the status, read the usage chart, lower the seats below use, revoke —
and see the badge, the seat count and the over-limit flag change."""

import datetime
import re

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from accounts import authentication, services
from accounts.exceptions import KeyRefused
from accounts.models import Developer, Organization

pytestmark = pytest.mark.django_db(transaction=True)

KEY_RE = re.compile(r"hc_live_[A-Za-z0-9]{40}")


def test_staff_day_in_the_browser(browser_page, screenshot):
    page = browser_page
    User.objects.create_superuser("boss", "boss@hotcross.test", "pw-boss-123")

    # Log in.
    page.goto("/admin/")
    assert "Log in" in page.title()
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-boss-123")
    page.click("input[type=submit]")
    page.wait_for_selector("text=Organizations and developers")
    screenshot("01-logged-in")

    # Create an organization with one seat; Stripe has not confirmed it yet.
    page.goto("/admin/accounts/organization/add/")
    page.fill("#id_name", "Browser Co")
    page.select_option("#id_subscription_status", "incomplete")
    page.fill("#id_max_seats", "1")
    page.fill("#id_stripe_customer_id", "cus_browser")
    page.click("input[name=_continue]")
    page.wait_for_selector("text=was added successfully")
    org = Organization.objects.get(name="Browser Co")
    screenshot("02-organization-created")

    # Add a developer from the organization's page; the key is shown once.
    page.click("text=Add developer")
    assert page.input_value("#id_organization") == str(org.pk)
    page.fill("#id_email", "ada@browser.test")
    page.fill("#id_first_name", "Ada")
    page.fill("#id_last_name", "Lovelace")
    page.click("input[name=_save]")
    page.wait_for_selector("text=will not be shown again")
    key = page.input_value("input.hc-key")
    assert KEY_RE.fullmatch(key)
    # The copy button's handler comes from a deferred script: the text above can show before it runs on a busy
    # machine, and a click then does nothing (CI once waited 15 s for "Copied." that way).
    page.wait_for_load_state("load")
    page.click("button.hc-copy")
    page.wait_for_selector("text=Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    screenshot("03-key-shown-once")
    developer = Developer.objects.get(email="ada@browser.test")
    with pytest.raises(KeyRefused) as refused:
        authentication.authenticate_key(key)
    assert refused.value.code == "subscription_inactive"  # the key is real: only the status stops it

    # Reloading the page does not show the key again: the reload re-sends the form, which was used already.
    page.on("dialog", lambda dialog: dialog.accept())
    page.reload()
    page.wait_for_selector("text=was added to Browser Co by this form already")
    assert key not in page.content()
    assert not KEY_RE.search(page.content())
    screenshot("04-after-reload")
    assert Developer.objects.filter(email="ada@browser.test").count() == 1

    # A second developer does not fit in one seat: the service's message, as a form error.
    page.goto(f"/admin/accounts/developer/add/?organization={org.pk}")
    page.fill("#id_email", "late@browser.test")
    page.click("input[name=_save]")
    page.wait_for_selector("text=Browser Co uses 1 of 1 seat.")
    assert not KEY_RE.search(page.content())
    screenshot("05-seat-limit-refused")

    # The list shows the badge, the seats and the Stripe link; setting the status changes the badge.
    page.goto("/admin/accounts/organization/")
    row = page.locator("#result_list tr", has_text="Browser Co")
    assert row.locator(".hc-badge").inner_text() == "Incomplete"
    assert "1 / 1" in row.inner_text()
    assert row.locator("a[href='https://dashboard.stripe.com/test/customers/cus_browser']").count() == 1
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "set_status")
    page.click("button[name=index]")
    page.select_option("#id_status", "active")
    page.click("input[type=submit][value='Set status']")
    page.wait_for_selector("text=Status set to active")
    row = page.locator("#result_list tr", has_text="Browser Co")
    assert row.locator(".hc-badge").inner_text() == "Active"
    screenshot("06-status-active")
    assert authentication.authenticate_key(key).developer_id == developer.pk

    # The organization's page: the developer in seat order and a month of usage, drawn on the server.
    now = timezone.now()
    for days_ago, ok in [(0, True), (0, False), (1, True), (3, True), (3, True), (12, True), (29, True)]:
        services.record_usage(
            developer_id=developer.pk,
            organization_id=org.pk,
            tool_name="whoami",
            ok=ok,
            duration_ms=5,
            created_at=now - datetime.timedelta(days=days_ago),
        )
    page.goto(f"/admin/accounts/organization/{org.pk}/change/")
    page.wait_for_selector("svg.hc-chart")
    assert page.locator("svg.hc-chart rect").count() == 5  # one bar per day with calls
    assert "7 calls, 1 error" in page.locator("#usage").inner_text()
    inline = page.locator(".inline-related tr", has_text="ada@browser.test")
    assert "1 of 1" in inline.inner_text() and developer.api_key_prefix in inline.inner_text()
    # The email once, as the link to the developer; the row is a saved one (Django's script offers no removal).
    assert inline.inner_text().count("ada@browser.test") == 1
    assert inline.locator("a", has_text="ada@browser.test").get_attribute("href").endswith(f"{developer.pk}/change/")
    assert page.locator(".inline-deletelink").count() == 0
    # The chart takes the width of its section.
    assert page.locator("svg.hc-chart").bounding_box()["width"] >= page.locator("#usage").bounding_box()["width"] - 30
    screenshot("07-organization-page")

    # Lowering the seats below those in use asks first, then flags the organization; the newest holder is refused.
    page.fill("#id_max_seats", "0")
    page.click("input[name=_save]")
    page.wait_for_selector("text=Lower seats below those in use?")
    assert "Browser Co uses 1 seat. With 0 seats, no one keeps access: this developer is refused" in page.content()
    screenshot("08-seats-confirmation")
    page.click("input[type=submit][value='Yes, set 0 seats']")
    page.wait_for_selector("text=was changed successfully")
    row = page.locator("#result_list tr", has_text="Browser Co")
    assert "1 / 0" in row.inner_text() and row.locator(".hc-flag").inner_text() == "over limit"
    screenshot("09-over-seat-limit")
    with pytest.raises(KeyRefused) as refused:
        authentication.authenticate_key(key)
    assert refused.value.code == "seat_limit_exceeded"

    # Revoke the developer's key from the developer list, after confirming.
    page.goto("/admin/accounts/developer/")
    page.locator("#result_list tr", has_text="ada@browser.test").locator("input.action-select").check()
    page.select_option("select[name=action]", "revoke_keys")
    page.click("button[name=index]")
    page.wait_for_selector("text=Revoke key?")
    screenshot("10-revoke-confirmation")
    page.click("input[type=submit][value='Yes, revoke']")
    page.wait_for_selector("text=Revoked 1 key.")
    assert page.locator("#result_list tr", has_text="ada@browser.test").locator(".hc-badge").inner_text() == "revoked"
    with pytest.raises(KeyRefused) as refused:
        authentication.authenticate_key(key)
    assert refused.value.code == "key_revoked"

    # The seat is free again, and the organization no longer over its limit.
    page.goto("/admin/accounts/organization/")
    row = page.locator("#result_list tr", has_text="Browser Co")
    assert "0 / 0" in row.inner_text() and row.locator(".hc-flag").count() == 0
    screenshot("11-seat-freed")
