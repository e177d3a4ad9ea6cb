"""The admin's index: a dashboard (seats, organizations by status, calls, failed webhooks) above an app list that puts
Hotcross first and shows dj-stripe to superusers only."""

import datetime
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from djstripe.models import Customer, WebhookEventTrigger

from accounts import selectors
from accounts.models import SubscriptionStatus
from tests.factories import DeveloperFactory, OrganizationFactory, UsageEventFactory

pytestmark = pytest.mark.django_db

INDEX = reverse("admin:index")
NOW = datetime.datetime(2026, 3, 15, 12, 0, tzinfo=datetime.UTC)


def holders(org, count: int, **fields) -> list:
    return DeveloperFactory.create_batch(count, organization=org, **fields)


@pytest.fixture
def business():
    """Seven organizations: seats, statuses, one over its limit; seat holders and developers who hold no seat."""
    orgs = {
        "acme": OrganizationFactory(name="Acme", subscription_status=SubscriptionStatus.ACTIVE, max_seats=3),
        "bolt": OrganizationFactory(name="Bolt", subscription_status=SubscriptionStatus.ACTIVE, max_seats=1),
        "cove": OrganizationFactory(name="Cove", subscription_status=SubscriptionStatus.TRIALING, max_seats=4),
        "dune": OrganizationFactory(name="Dune", subscription_status=SubscriptionStatus.PAST_DUE, max_seats=5),
        "echo": OrganizationFactory(name="Echo", subscription_status=SubscriptionStatus.UNPAID, max_seats=2),
        "fern": OrganizationFactory(name="Fern", subscription_status=SubscriptionStatus.CANCELED, max_seats=10),
        "gale": OrganizationFactory(name="Gale", subscription_status=SubscriptionStatus.INCOMPLETE, max_seats=1),
    }
    holders(orgs["acme"], 2)
    holders(orgs["acme"], 1, api_key_revoked_at=NOW)  # no seat: revoked
    holders(orgs["acme"], 1, is_active=False)  # no seat: inactive
    holders(orgs["bolt"], 3)  # downgraded to 1 seat: 1 held, 2 refused
    holders(orgs["cove"], 1)
    holders(orgs["dune"], 2)
    holders(orgs["fern"], 1)
    return orgs


def usage(org, when: datetime.datetime, calls: int, errors: int = 0) -> None:
    developer = DeveloperFactory(organization=org, is_active=False)  # holds no seat: the seat figures stay
    for i in range(calls):
        UsageEventFactory(developer=developer, created_at=when, ok=i >= errors)


def trigger(*, valid: bool, processed: bool, exception: str = "", hours_ago: float = 1, now=None):
    made = WebhookEventTrigger.objects.create(
        remote_ip="127.0.0.1", headers={}, body="{}", valid=valid, processed=processed, exception=exception
    )
    # `created` is auto_now_add: set the time afterwards.
    WebhookEventTrigger.objects.filter(pk=made.pk).update(
        created=(now or timezone.now()) - datetime.timedelta(hours=hours_ago)
    )
    return made


def webhooks(now=None) -> dict[str, WebhookEventTrigger]:
    return {
        "ok": trigger(valid=True, processed=True, now=now),
        "invalid": trigger(valid=False, processed=False, now=now),
        "unprocessed": trigger(valid=True, processed=False, exception="KeyError: 'customer'", now=now),
        "errored": trigger(valid=True, processed=True, exception="ValueError", now=now),
        "old": trigger(valid=False, processed=False, hours_ago=30, now=now),
    }


class TestFigures:
    def test_seats_statuses_and_over_limit(self, business):
        board = selectors.dashboard_figures(now=NOW)
        assert board.organizations == 7
        assert {row.status: row.organizations for row in board.by_status} == {
            "active": 2,
            "trialing": 1,
            "past_due": 1,
            "unpaid": 1,
            "paused": 0,
            "incomplete": 1,
            "canceled": 1,
            "incomplete_expired": 0,
        }
        assert [row.status for row in board.by_status if row.needs_attention] == ["past_due", "unpaid", "canceled"]
        assert board.needs_attention == 3
        assert board.over_seat_limit == 1  # Bolt: 3 holders, 1 seat
        # Paid: the seats of the organizations in good standing (Acme 3, Bolt 1, Cove 4 on trial).
        assert (board.seats_paid, board.seats_on_trial) == (8, 4)
        # Held there, up to each one's seats: Acme 2 (not the revoked or inactive ones), Bolt 1 of its 3, Cove 1.
        assert (board.seats_held, board.seat_holders_refused) == (4, 2)

    def test_calls_today_this_month_and_per_day(self, business):
        acme, dune = business["acme"], business["dune"]
        usage(acme, NOW - datetime.timedelta(hours=2), calls=3, errors=1)  # today
        usage(dune, NOW.replace(day=2), calls=2)  # this month
        usage(acme, NOW.replace(month=2, day=20), calls=4, errors=4)  # last month, within 30 days
        usage(acme, NOW.replace(month=1, day=1), calls=5)  # older
        board = selectors.dashboard_figures(now=NOW)
        assert (board.calls_today, board.errors_today) == (3, 1)
        assert (board.calls_this_month, board.errors_this_month) == (5, 1)
        assert board.first_day == datetime.date(2026, 2, 14) and board.month_start == datetime.date(2026, 3, 1)
        assert [(d.day.isoformat(), d.calls, d.errors) for d in board.per_day] == [
            ("2026-02-20", 4, 4),
            ("2026-03-02", 2, 0),
            ("2026-03-15", 3, 1),
        ]

    def test_this_month_reaches_before_the_30_days(self):
        # On the 31st, the month began 30 days ago: its first day is counted though the chart starts a day later.
        now = datetime.datetime(2026, 1, 31, 12, tzinfo=datetime.UTC)
        usage(OrganizationFactory(), now.replace(day=1), calls=2)
        board = selectors.dashboard_figures(now=now)
        assert board.calls_this_month == 2 and board.per_day == []

    def test_failed_webhook_deliveries_of_the_last_24_hours(self):
        webhooks(now=NOW)
        board = selectors.dashboard_figures(now=NOW)
        assert (board.webhooks_invalid, board.webhooks_unprocessed, board.webhooks_errored) == (1, 1, 1)
        assert board.webhooks_failed == 3

    def test_nothing_yet(self):
        board = selectors.dashboard_figures(now=NOW)
        assert (board.organizations, board.seats_paid, board.seats_held, board.calls_today) == (0, 0, 0, 0)


def figure(body: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}">([^<]*)<', body)
    assert match, name
    return match.group(1)


def result_names(client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, url
    return sorted(str(obj) for obj in response.context["cl"].result_list)


def links(body: str) -> dict[str, str]:
    """The dashboard's links by their text (a count)."""
    dashboard = body[body.index('id="dashboard"') : body.index("app-accounts")]
    return {
        url.replace("&amp;", "&"): text for url, text in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', dashboard)
    }


class TestPage:
    def test_superuser_sees_the_figures_and_every_link_leads_to_what_it_counts(self, staff_client, business):
        usage(business["acme"], timezone.now(), calls=3, errors=1)
        triggers = webhooks()
        response = staff_client.get(INDEX)
        body = response.content.decode()
        assert figure(body, "seats-held") == "4" and figure(body, "seats-paid") == "8"
        assert figure(body, "calls-today") == "3" and figure(body, "webhooks-failed") == "3"
        assert figure(body, "over-seat-limit") == "1"
        assert "<svg" in body and 'width="100%"' in body

        org_list = reverse("admin:accounts_organization_changelist")
        found = links(body)
        for status, names in {
            "active": ["Acme", "Bolt"],
            "past_due": ["Dune"],
            "unpaid": ["Echo"],
            "canceled": ["Fern"],
            "paused": [],
        }.items():
            url = f"{org_list}?subscription_status__exact={status}"
            assert found[url] == str(len(names))
            assert result_names(staff_client, url) == names
        assert result_names(staff_client, f"{org_list}?over_seat_limit=yes") == ["Bolt"]
        # The attention rows are flagged: the three statuses that have organizations, and the over-limit row.
        card = body[body.index('id="dashboard-organizations"') : body.index('id="dashboard-webhooks"')]
        assert card.count("needs attention</span>") == 4

        triggers_list = reverse("admin:djstripe_webhookeventtrigger_changelist")
        webhook_links = {url: count for url, count in found.items() if url.startswith(triggers_list)}
        assert len(webhook_links) == 4  # the three kinds, and every delivery of the 24 hours
        shown = {}
        for url, count in webhook_links.items():
            listed = {obj.pk for obj in staff_client.get(url).context["cl"].result_list}
            if count.isdigit():
                assert len(listed) == int(count)
            shown[url] = listed
        by_kind = sorted(shown.values(), key=len)
        assert by_kind[:3] == sorted(
            [{triggers["invalid"].pk}, {triggers["unprocessed"].pk}, {triggers["errored"].pk}], key=len
        )
        assert by_kind[3] == {t.pk for name, t in triggers.items() if name != "old"}

    def test_hotcross_first_and_dj_stripe_as_one_section_last(self, staff_client):
        app_list = staff_client.get(INDEX).context["app_list"]
        assert app_list[0]["name"] == "Organizations and developers"
        # dj-stripe's section is folded below the others (issue 31), as the one Stripe section
        assert "djstripe" not in [app["app_label"] for app in app_list]
        (stripe,) = staff_client.get(INDEX).context["stripe_apps"]
        assert stripe["app_label"] == "djstripe" and stripe["name"] == "Stripe (synced data)"
        models = [model["object_name"] for model in stripe["models"]]
        assert models[:3] == ["Customer", "Subscription", "WebhookEventTrigger"]
        assert len(models) > 20
        body = staff_client.get(INDEX).content.decode()
        assert body.index("Organizations and developers") < body.index("Stripe (synced data)")

    def test_support_sees_the_dashboard_without_dj_stripe(self, support_client, business):
        webhooks()
        response = support_client.get(INDEX)
        body = response.content.decode()
        assert figure(body, "webhooks-failed") == "3" and figure(body, "seats-paid") == "8"
        assert "djstripe" not in body and "Stripe (synced data)" not in body
        assert all(app["app_label"] != "djstripe" for app in response.context["app_list"])
        assert support_client.get(reverse("admin:app_list", args=["djstripe"])).status_code == 404

    def test_dj_stripe_permissions_do_not_open_dj_stripe_to_non_superusers(self, client, make_staff, org):
        # A staff user given dj-stripe's permissions still sees none of it: the index, the pages and the organization
        # page's links agree.
        user = make_staff("view_organization", "view_developer")
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="djstripe"))
        user = User.objects.get(pk=user.pk)
        assert user.has_perm("djstripe.view_customer")
        client.force_login(user)
        response = client.get(INDEX)
        assert all(app["app_label"] != "djstripe" for app in response.context["app_list"])
        assert "djstripe" not in response.content.decode()
        Customer.objects.create(id="cus_acme", livemode=False)
        assert client.get(reverse("admin:djstripe_customer_changelist")).status_code == 403
        assert client.get(reverse("admin:djstripe_webhookeventtrigger_changelist")).status_code == 403
        org_page = client.get(reverse("admin:accounts_organization_change", args=[org.pk])).content.decode()
        assert "Stripe dashboard" in org_page and "dj-stripe customer" not in org_page

    def test_staff_who_may_not_view_organizations_get_no_dashboard(self, client, make_staff, business):
        client.force_login(make_staff("view_developer"))
        response = client.get(INDEX)
        assert response.status_code == 200 and response.context["dashboard"] is None
        assert 'id="dashboard"' not in response.content.decode()


def seed(organizations: int) -> None:
    now = timezone.now()
    statuses = list(SubscriptionStatus.values)
    for i in range(organizations):
        org = OrganizationFactory(subscription_status=statuses[i % len(statuses)], max_seats=i % 3)
        developers = DeveloperFactory.create_batch(2, organization=org)
        for days_ago in (0, 1, 40):
            UsageEventFactory(developer=developers[0], created_at=now - datetime.timedelta(days=days_ago))
        trigger(valid=i % 2 == 0, processed=False)


def index_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(INDEX).status_code == 200
    return len(queries)


@pytest.mark.parametrize("viewer", ["superuser", "support"])
def test_the_dashboard_costs_the_same_queries_with_2_and_40_organizations(client, superuser, support_user, viewer):
    client.force_login(superuser if viewer == "superuser" else support_user)
    seed(2)
    client.get(INDEX)  # warm per-process caches (content types)
    small = index_queries(client)
    seed(38)
    assert index_queries(client) == small
