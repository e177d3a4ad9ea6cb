"""The organization pages: list, add/change through the services, seats confirmation, actions, usage chart."""

import datetime
import re
import uuid
from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.urls import reverse
from django.utils import timezone
from djstripe import models as djstripe_models

from accounts import authentication, selectors
from accounts.exceptions import KeyRefused
from accounts.models import Organization
from tests.factories import DeveloperFactory, OrganizationFactory, UsageEventFactory

pytestmark = pytest.mark.django_db

CHANGELIST_URL = reverse("admin:accounts_organization_changelist")
ADD_URL = reverse("admin:accounts_organization_add")


def change_url(org) -> str:
    return reverse("admin:accounts_organization_change", args=[org.pk])


def history(obj) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=str(obj.pk)).order_by("action_time", "id"))


def form_data(org, **changes) -> dict:
    """What the change form posts back unchanged (plus `changes`), inline management form included."""
    data = {
        "name": org.name,
        "billing_email": org.billing_email,
        "pricing_model": org.pricing_model,
        "subscription_status": org.subscription_status,
        "max_seats": str(org.max_seats),
        "stripe_customer_id": org.stripe_customer_id or "",
        "developers-TOTAL_FORMS": "0",
        "developers-INITIAL_FORMS": "0",
        "developers-MIN_NUM_FORMS": "0",
        "developers-MAX_NUM_FORMS": "0",
        "_save": "Save",
    }
    data.update({k: str(v) for k, v in changes.items()})
    return data


def readonly_value(response, field: str) -> str:
    """The text Django's change page shows for a read-only field."""
    body = response.content.decode()
    match = re.search(rf'field-{field}\b.*?<div class="readonly">(.*?)</div>', body, re.S)
    assert match, field
    return match.group(1).strip()


class _FormFields(HTMLParser):
    """What a browser posts for the page's main form: inputs, selected options and text areas (no buttons)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._select: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("type") not in ("submit", "button", "checkbox", "radio"):
            self.data[a["name"]] = a.get("value") or ""
        elif tag == "input" and a.get("type") == "checkbox" and "checked" in a and a.get("name"):
            self.data[a["name"]] = a.get("value") or "on"
        elif tag == "select" and a.get("name"):
            self._select, self._first_option = a["name"], None
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = a.get("value") or ""
                self.data.setdefault(self._select, self._first_option)
            if "selected" in a:
                self.data[self._select] = a.get("value") or ""
        elif tag == "textarea" and a.get("name"):
            self._textarea = a["name"]
            self.data[self._textarea] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data


def form_fields(html: str) -> dict[str, str]:
    form = re.search(r'<form[^>]*id="organization_form".*?</form>', html, re.S)
    assert form
    parser = _FormFields()
    parser.feed(form.group(0))
    return parser.data


class TestChangelist:
    def test_columns_badge_seats_stripe_link_and_developer_count(self, staff_client, org, developer):
        body = staff_client.get(CHANGELIST_URL).content.decode()
        assert 'class="hc-badge hc-ok" data-status="active">Active</span>' in body
        assert "1 / 3" in body
        assert 'href="https://dashboard.stripe.com/test/customers/cus_acme"' in body
        assert f"?organization__id__exact={org.pk}" in body
        assert "Per organization (seats)" in body
        assert "accounts/admin.css" in body

    def test_live_mode_links_to_the_live_dashboard(self, staff_client, org, settings):
        settings.STRIPE_LIVE_MODE = True
        body = staff_client.get(CHANGELIST_URL).content.decode()
        assert 'href="https://dashboard.stripe.com/customers/cus_acme"' in body

    def test_over_the_limit_is_flagged_and_filterable(self, staff_client, org):
        DeveloperFactory.create_batch(2, organization=org)
        crowded = OrganizationFactory(name="Crowded", max_seats=1)
        DeveloperFactory.create_batch(2, organization=crowded)
        body = staff_client.get(CHANGELIST_URL).content.decode()
        assert "2 / 1" in body and "over limit" in body
        flagged = staff_client.get(CHANGELIST_URL + "?over_seat_limit=yes").context["cl"].result_list
        assert [o.name for o in flagged] == ["Crowded"]
        fine = staff_client.get(CHANGELIST_URL + "?over_seat_limit=no").context["cl"].result_list
        assert [o.name for o in fine] == ["Acme Corp"]

    def test_last_activity_is_the_latest_key_use(self, staff_client, org):
        used = timezone.now() - datetime.timedelta(hours=2)
        DeveloperFactory(organization=org, api_key_last_used_at=used)
        DeveloperFactory(organization=org, api_key_last_used_at=used - datetime.timedelta(days=3))
        OrganizationFactory(name="Quiet")
        rows = {o.name: o.last_activity for o in staff_client.get(CHANGELIST_URL).context["cl"].result_list}
        assert rows == {"Acme Corp": used, "Quiet": None}

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("q=acme", {"Acme Corp"}),
            ("q=cus_beta", {"Beta GmbH"}),
            ("q=grace@beta.test", {"Beta GmbH"}),
            ("subscription_status__exact=past_due", {"Beta GmbH"}),
            ("pricing_model__exact=hybrid", {"Beta GmbH"}),
        ],
    )
    def test_search_and_filters(self, staff_client, org, query, expected):
        beta = OrganizationFactory(
            name="Beta GmbH", stripe_customer_id="cus_beta", subscription_status="past_due", pricing_model="hybrid"
        )
        DeveloperFactory(organization=beta, email="grace@beta.test")
        DeveloperFactory(organization=beta, email="grace2@beta.test")
        results = staff_client.get(f"{CHANGELIST_URL}?{query}").context["cl"].result_list
        assert {o.name for o in results} == expected
        assert len(results) == len(expected)  # searching developers' emails does not duplicate rows


class TestAddAndChange:
    def test_add_goes_through_the_service_and_is_recorded_once(self, staff_client, superuser):
        response = staff_client.post(
            ADD_URL,
            {
                "name": "  New Co ",
                "billing_email": "billing@new.test",
                "pricing_model": "per_organization",
                "subscription_status": "trialing",
                "max_seats": "4",
                "stripe_customer_id": "",
                "_continue": "1",
            },
        )
        org = Organization.objects.get()
        assert response.status_code == 302 and response["Location"] == change_url(org)
        assert (org.name, org.max_seats, org.subscription_status, org.stripe_customer_id) == (
            "New Co",
            4,
            "trialing",
            None,
        )
        (entry,) = history(org)
        assert entry.action_flag == ADDITION and entry.user == superuser

    def test_a_taken_stripe_id_is_a_form_error(self, staff_client, org):
        response = staff_client.post(
            ADD_URL,
            {
                "name": "Copy",
                "pricing_model": "per_organization",
                "subscription_status": "active",
                "max_seats": "1",
                "stripe_customer_id": "cus_acme",
            },
        )
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["stripe_customer_id"]
        assert Organization.objects.count() == 1

    def test_change_calls_each_service_once_with_the_staff_user(self, staff_client, org, superuser):
        response = staff_client.post(
            change_url(org), form_data(org, name="Acme Inc", subscription_status="past_due", max_seats=5)
        )
        assert response.status_code == 302
        org.refresh_from_db()
        assert (org.name, org.subscription_status, org.max_seats) == ("Acme Inc", "past_due", 5)
        messages = [e.change_message for e in history(org)]
        assert messages == ["Changed name.", "Subscription status: active → past_due.", "Seats: 3 → 5."]
        assert {e.user for e in history(org)} == {superuser}

    def test_saving_unchanged_records_nothing(self, staff_client, org):
        assert staff_client.post(change_url(org), form_data(org)).status_code == 302
        assert history(org) == []

    def test_a_status_change_reaches_the_key_check(self, staff_client, org, developer):
        staff_client.post(change_url(org), form_data(org, subscription_status="canceled"))
        with pytest.raises(KeyRefused) as refused:
            authentication.authenticate_key(developer.plain_key)
        assert refused.value.code == "subscription_inactive"

    def test_negative_seats_are_a_form_error(self, staff_client, org):
        response = staff_client.post(change_url(org), form_data(org, max_seats=-1))
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["max_seats"]
        org.refresh_from_db()
        assert org.max_seats == 3


class TestSeatsBelowUse:
    def test_lowering_below_use_asks_first_then_flags_and_the_earliest_keep_access(self, staff_client, org):
        first, second, third = (DeveloperFactory(organization=org, email=f"d{i}@acme.test") for i in range(3))
        ask = staff_client.post(change_url(org), form_data(org, max_seats=1))
        assert ask.status_code == 200
        body = ask.content.decode()
        assert "Lower seats below those in use?" in body
        assert (
            "Acme Corp uses 3 seats. With 1 seat, the earliest seat holder keeps access and these 2 developers are "
            "refused until seats are added or freed." in body
        )
        assert "d1@acme.test" in body and "d2@acme.test" in body and "d0@acme.test" not in body
        org.refresh_from_db()
        assert org.max_seats == 3 and history(org) == []

        replay = dict(ask.context["hidden"])
        assert replay["_confirm_seats"] == "yes" and replay["max_seats"] == "1"
        done = staff_client.post(change_url(org), {k: v for k, v in ask.context["hidden"]})
        assert done.status_code == 302
        org.refresh_from_db()
        assert org.max_seats == 1
        assert authentication.authenticate_key(first.plain_key).developer_id == first.pk
        for late in (second, third):
            with pytest.raises(KeyRefused) as refused:
                authentication.authenticate_key(late.plain_key)
            assert refused.value.code == "seat_limit_exceeded"
        (entry,) = history(org)
        assert entry.change_message.startswith("Seats: 3 → 1. 3 in use")

        page = staff_client.get(change_url(org)).content.decode()
        assert "3 / 1" in page and "over limit" in page and "over the limit: refused" in page
        assert "over limit" in staff_client.get(CHANGELIST_URL).content.decode()

    def test_lowering_but_not_below_use_needs_no_confirmation(self, staff_client, org, developer):
        response = staff_client.post(change_url(org), form_data(org, max_seats=1))
        assert response.status_code == 302
        org.refresh_from_db()
        assert org.max_seats == 1


class TestActions:
    def test_set_status_asks_for_the_status_then_sets_it(self, staff_client, org, superuser):
        other = OrganizationFactory(subscription_status="trialing")
        ids = [str(org.pk), str(other.pk)]
        ask = staff_client.post(CHANGELIST_URL, {"action": "set_status", "_selected_action": ids, "index": "0"})
        assert ask.status_code == 200 and 'name="status"' in ask.content.decode()
        done = staff_client.post(
            CHANGELIST_URL, {"action": "set_status", "_selected_action": ids, "post": "yes", "status": "unpaid"}
        )
        assert done.status_code == 302
        assert set(Organization.objects.values_list("subscription_status", flat=True)) == {"unpaid"}
        for o in (org, other):
            (entry,) = history(o)
            assert entry.user == superuser and "→ unpaid" in entry.change_message

    def test_an_unknown_status_is_refused_and_nothing_changes(self, staff_client, org):
        response = staff_client.post(
            CHANGELIST_URL,
            {"action": "set_status", "_selected_action": [str(org.pk)], "post": "yes", "status": "bogus"},
        )
        assert response.status_code == 200 and response.context["form"].errors["status"]
        org.refresh_from_db()
        assert org.subscription_status == "active" and history(org) == []

    def test_revoke_every_key_confirms_then_revokes_all(self, staff_client, org, superuser):
        devs = DeveloperFactory.create_batch(2, organization=org)
        bystander = DeveloperFactory()
        ask = staff_client.post(
            CHANGELIST_URL, {"action": "revoke_all_keys", "_selected_action": [str(org.pk)], "index": "0"}
        )
        assert ask.status_code == 200 and "Acme Corp: 2 seats in use" in ask.content.decode()
        assert selectors.seats_in_use(org) == 2
        staff_client.post(
            CHANGELIST_URL, {"action": "revoke_all_keys", "_selected_action": [str(org.pk)], "post": "yes"}
        )
        assert selectors.seats_in_use(org) == 0
        for dev in devs:
            (entry,) = history(dev)
            assert entry.user == superuser and "Revoked key" in entry.change_message
        assert authentication.authenticate_key(bystander.plain_key).developer_id == bystander.pk


class TestChangePage:
    def test_developers_inline_without_hash_or_editable_key_fields(self, staff_client, org, developer):
        body = staff_client.get(change_url(org)).content.decode()
        assert "ada@acme.test" in body and developer.api_key_prefix in body
        assert developer.api_key_hash not in body
        assert "api_key" not in "".join(
            line for line in body.splitlines() if "<input" in line and "developers-" in line
        )
        assert "1 of 3" in body  # the developer's seat
        assert reverse("admin:accounts_developer_add") + f"?organization={org.pk}" in body

    def test_each_developer_row_shows_the_email_once_as_the_link_to_the_developer(self, staff_client, org, developer):
        body = staff_client.get(change_url(org)).content.decode()
        row = re.search(r'<tr class="form-row has_original"[^>]*id="developers-0">(.*?)</tr>', body, re.S).group(1)
        assert row.count("ada@acme.test") == 1
        developer_url = reverse("admin:accounts_developer_change", args=[developer.pk])
        assert f'<a href="{developer_url}">ada@acme.test</a>' in row
        assert "inlineviewlink" not in body and "inlinechangelink" not in body
        # The cell Django shows the grey line in holds only the hidden id and organization fields now.
        original = re.search(r'<td class="original">(.*?)</td>', row, re.S).group(1)
        assert re.sub(r"<input[^>]*>", "", original).strip() == ""

    def test_usage_chart_fills_the_width_and_its_legend_follows_the_stacks(self, staff_client, org):
        now = timezone.now()
        # Seat order zed, amy; amy is busier and first by name: the legend still lists zed first, as the inline does.
        zed = DeveloperFactory(organization=org, email="zed@acme.test", seat_claimed_at=now - datetime.timedelta(9))
        amy = DeveloperFactory(organization=org, email="amy@acme.test", seat_claimed_at=now - datetime.timedelta(1))
        UsageEventFactory(developer=zed, created_at=now)
        UsageEventFactory.create_batch(3, developer=amy, created_at=now)
        response = staff_client.get(change_url(org))
        chart = response.context["usage_chart"]
        assert [s.label for s in chart.legend] == ["zed@acme.test", "amy@acme.test"]
        bottom_up = sorted(chart.segments, key=lambda s: -s.y)
        assert [s.color for s in bottom_up] == [s.color for s in chart.legend]
        body = response.content.decode()
        svg = re.search(r'<svg class="hc-chart"[^>]*>', body).group(0)
        assert 'width="100%"' in svg and f'viewBox="0 0 {chart.width} {chart.height}"' in svg
        legend = body[body.index("hc-usage-legend") :]
        assert legend.index("zed@acme.test") < legend.index("amy@acme.test")
        inline = body[body.index('id="developers-group"') :]
        assert inline.index("zed@acme.test") < inline.index("amy@acme.test")  # the same order as the developers

    def test_links_to_stripe_and_dj_stripe(self, staff_client, org):
        org.subscription_id = "sub_123"
        org.save()
        body = staff_client.get(change_url(org)).content.decode()
        assert "https://dashboard.stripe.com/test/customers/cus_acme" in body
        # Issue 31: no link to dj-stripe's pages before dj-stripe has synced the object (it opened an empty list).
        customer_url = reverse("admin:djstripe_customer_changelist") + "?id=cus_acme"
        assert customer_url not in body and "dj-stripe customer" not in body
        assert "dj-stripe subscription" not in body
        # Once synced, the link opens dj-stripe's list on exactly that customer.
        djstripe_models.Customer.objects.create(id="cus_acme", livemode=False)
        djstripe_models.Customer.objects.create(id="cus_other", livemode=False)
        body = staff_client.get(change_url(org)).content.decode()
        assert customer_url in body and "dj-stripe subscription" not in body
        synced = staff_client.get(customer_url)
        assert [c.id for c in synced.context["cl"].result_list] == ["cus_acme"]

    def test_last_activity_is_readable_on_the_change_page(self, staff_client, org):
        assert "never" in readonly_value(staff_client.get(change_url(org)), "last_activity")
        used = datetime.datetime(2026, 3, 4, 5, 6, tzinfo=datetime.UTC)
        DeveloperFactory(organization=org, api_key_last_used_at=used)
        shown = readonly_value(staff_client.get(change_url(org)), "last_activity")
        assert "2026-03-04 05:06" in shown  # one format on every page (hotcross/formats)
        assert "None" not in shown and "+00:00" not in shown

    def test_posting_the_page_as_a_browser_does_saves_through_the_services(self, staff_client, org, developer):
        # The form as rendered (the developers inline's rows and management form included), one field changed.
        data = form_fields(staff_client.get(change_url(org)).content.decode())
        assert data["developers-INITIAL_FORMS"] == "1" and data["developers-0-id"] == str(developer.pk)
        data.update(name="Acme Renamed", max_seats="4", _save="Save")
        assert staff_client.post(change_url(org), data).status_code == 302
        org.refresh_from_db()
        assert (org.name, org.max_seats) == ("Acme Renamed", 4)
        assert [e.change_message for e in history(org)] == ["Changed name.", "Seats: 3 → 4."]
        developer.refresh_from_db()
        assert developer.holds_seat and history(developer) == []

    def test_usage_chart_of_the_last_30_days_per_developer(self, staff_client, org, developer):
        grace = DeveloperFactory(organization=org, email="grace@acme.test")
        now = timezone.now()
        UsageEventFactory(developer=developer, tool_name="whoami", created_at=now)
        UsageEventFactory(developer=grace, tool_name="usage", created_at=now - datetime.timedelta(days=2))
        UsageEventFactory(developer=grace, tool_name="usage", ok=False, created_at=now)
        UsageEventFactory(developer=grace, tool_name="usage", created_at=now - datetime.timedelta(days=40))  # too old
        response = staff_client.get(change_url(org))
        chart = response.context["usage_chart"]
        assert chart.total_calls == 3 and chart.total_errors == 1
        assert {(s.label, s.calls, s.errors) for s in chart.legend} == {
            ("ada@acme.test", 1, 0),
            ("grace@acme.test", 2, 1),
        }
        body = response.content.decode()
        assert "<svg" in body and "3 calls, 1 error" in body
        assert body.count("<rect ") == 3  # today: two developers stacked; two days ago: one

    def test_no_usage_says_so(self, staff_client, org):
        assert "No recorded calls in the last 30 days." in staff_client.get(change_url(org)).content.decode()

    def test_there_is_no_delete(self, staff_client, org):
        assert "delete_selected" not in staff_client.get(CHANGELIST_URL).content.decode()
        assert staff_client.get(reverse("admin:accounts_organization_delete", args=[org.pk])).status_code == 403

    def test_autocomplete_for_the_developer_form_finds_organizations(self, staff_client, org):
        OrganizationFactory(name="Other")
        response = staff_client.get(
            reverse("admin:autocomplete"),
            {"app_label": "accounts", "model_name": "developer", "field_name": "organization", "term": "acme"},
        )
        assert [r["text"] for r in response.json()["results"]] == ["Acme Corp"]


@pytest.mark.django_db
def test_pages_say_the_legacy_id_only_when_there_is_one_and_the_dashboard_speaks_plainly(staff_client):
    """Issue 31: "Legacy customer id: -" on every page, a "History" section next to the "History" button, and
    engineer-speak on the dashboard ("one of our receivers raised", "one served tools/call")."""
    plain = DeveloperFactory()
    legacy_id = uuid.uuid4()
    converted = DeveloperFactory(legacy_customer_id=legacy_id, organization__legacy_customer_id=legacy_id)
    for developer in (plain, converted):
        for url in (
            reverse("admin:accounts_organization_change", args=[developer.organization_id]),
            reverse("admin:accounts_developer_change", args=[developer.pk]),
        ):
            page = staff_client.get(url).content.decode()
            assert ("Legacy customer id" in page) == bool(developer.legacy_customer_id), url
            assert "<h2>History</h2>" not in page and "Record" in page
    dashboard = staff_client.get(reverse("admin:index")).content.decode()
    assert "receivers raised" not in dashboard and "served tools/call" not in dashboard
    assert (
        "HOTCROSS_DEFAULT_PLAN"
        not in staff_client.get(
            reverse("admin:accounts_organization_change", args=[plain.organization_id])
        ).content.decode()
    )
