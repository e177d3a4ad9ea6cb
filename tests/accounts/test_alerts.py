"""Owners' alerts by email (accounts.alerts): 80 % and 100 % of the monthly cap after usage is written, a failed
payment, members refused for lack of seats; each once per period, to the active owners (the billing address when
there is none), after the transaction commits."""

from __future__ import annotations

import asyncio
import datetime
import io

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import transaction
from django.test.utils import CaptureQueriesContext

from accounts import alerts, plans, services
from accounts.choices import AlertKind, AtCap, Role, SubscriptionStatus
from accounts.models import AlertSent
from infra import mailer
from infra.db import aclose
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory, UsageRollupFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_gate(settings):
    settings.HOTCROSS_ALERT_CHECK_SECONDS = 0
    settings.HOTCROSS_PUBLIC_URL = "https://hotcross.example"
    alerts.gate.clear()
    plans.forget_table()  # a plan id of an earlier test may be reused
    yield
    alerts.gate.clear()
    plans.forget_table()


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the on-commit callbacks of the block (the test's transaction never commits)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def sent() -> list:
    assert mailer.wait_idle(timeout=10)
    return [m for m in mail.outbox]


def capped_org(*, calls_per_seat=10, seats=2, at_cap=AtCap.REFUSE, **kwargs):
    plan = PlanFactory(monthly_calls_per_seat=calls_per_seat, at_cap=at_cap, name="Team")
    return OrganizationFactory(name="Acme", plan=plan, max_seats=seats, **kwargs)


def use(developer, calls: int) -> None:
    call = {
        "developer_id": developer.pk,
        "organization_id": developer.organization_id,
        "tool_name": "whoami",
        "ok": True,
        "duration_ms": 1,
    }
    assert services.record_usages([call] * calls) == [None] * calls


@pytest.fixture
def acme():
    org = capped_org()  # cap 20 calls
    owner = DeveloperFactory(organization=org, email="owner@acme.test", role=Role.OWNER)
    DeveloperFactory(organization=org, email="second-owner@acme.test", role=Role.OWNER)
    DeveloperFactory(organization=org, email="gone-owner@acme.test", role=Role.OWNER, is_active=False)
    DeveloperFactory(organization=org, email="admin@acme.test", role=Role.ADMIN)
    return org, owner


class TestMonthlyCap:
    def test_80_then_100_percent_each_mailed_once_to_the_active_owners(self, acme, committed):
        org, owner = acme
        with committed():
            use(owner, 15)
        assert sent() == []
        with committed():
            use(owner, 1)  # 16 of 20: 80 %
        mails = sent()
        assert sorted(m.to[0] for m in mails) == ["owner@acme.test", "second-owner@acme.test"]
        assert mails[0].subject == "Acme has used 80 % of its monthly calls on Hotcross"
        assert "Acme has made 16 of its 20 calls this month (80 %" in mails[0].body
        assert "refused (monthly_cap_reached)" in mails[0].body
        assert "https://hotcross.example/org/usage/" in mails[0].body
        alert = AlertSent.objects.get(organization=org)
        assert (alert.kind, alert.period, alert.recipients) == (AlertKind.CAP_80, alerts.month_period(), 2)

        with committed():
            use(owner, 2)  # 18: still 80 %, told already
        assert len(sent()) == 2
        with committed():
            use(owner, 2)  # 20: the cap
        mails = sent()[2:]
        assert len(mails) == 2
        assert mails[0].subject == "Acme has reached its monthly cap of 20 calls on Hotcross"
        assert "Further calls are refused (monthly_cap_reached) until the month ends" in mails[0].body
        assert "add seats or change plan" in mails[0].body
        with committed():
            use(owner, 5)
        assert len(sent()) == 4
        assert sorted(AlertSent.objects.values_list("kind", flat=True)) == [AlertKind.CAP_100, AlertKind.CAP_80]

    def test_once_the_100_percent_mail_is_known_no_batch_checks_again(self, acme, committed):
        _org, owner = acme
        with committed():
            use(owner, 20)
        assert len(sent()) == 2
        with CaptureQueriesContext(transaction.get_connection()) as queries:
            use(owner, 1)
        assert not any("accounts_usagerollup" in q["sql"] and "SUM" in q["sql"].upper() for q in queries)
        assert not any("accounts_alertsent" in q["sql"] for q in queries)

    def test_both_thresholds_in_one_batch_mail_only_the_cap_and_no_80_later(self, acme, committed):
        org, owner = acme
        with committed():
            use(owner, 25)
        assert {m.subject for m in sent()} == {"Acme has reached its monthly cap of 20 calls on Hotcross"}
        services.set_seats(organization=org, max_seats=3)  # cap 30: 25 is 83 %
        alerts.gate.clear()  # another process, say, that knows nothing
        with committed():
            use(owner, 1)
        assert len(sent()) == 2
        assert list(AlertSent.objects.values_list("kind", flat=True)) == [AlertKind.CAP_100]

    def test_the_gate_checks_an_organization_at_most_once_per_interval(self, acme, committed, settings):
        settings.HOTCROSS_ALERT_CHECK_SECONDS = 30
        _org, owner = acme
        with committed():
            use(owner, 1)  # checked: 1 of 20
        with committed():
            use(owner, 19)  # within 30 s: not checked
        assert sent() == []
        alerts.gate.clear()  # the interval has passed
        with committed():
            use(owner, 1)
        assert len(sent()) == 2

    def test_overage_plan_says_calls_are_billed(self, committed):
        org = capped_org(at_cap=AtCap.OVERAGE)
        owner = DeveloperFactory(organization=org, role=Role.OWNER)
        with committed():
            use(owner, 20)
        (message,) = sent()
        assert "Calls go on: those beyond the cap are billed as overage" in message.body
        assert "refused" not in message.body

    def test_uncapped_and_unused_organizations_get_nothing(self, committed):
        plan = PlanFactory(monthly_calls_per_seat=None)
        uncapped = DeveloperFactory(organization=OrganizationFactory(plan=plan), role=Role.OWNER)
        no_seats = DeveloperFactory(organization=capped_org(seats=0), role=Role.OWNER)
        with committed():
            use(uncapped, 50)
            alerts.check_caps([no_seats.organization_id])  # cap 0 but no call: nothing to say
        assert sent() == []
        assert not AlertSent.objects.exists()

    def test_without_an_owner_the_billing_address_is_told_and_without_either_nobody(self, committed):
        billed = capped_org(billing_email="billing@acme.test")
        nobody = capped_org(billing_email="")
        with committed():
            use(DeveloperFactory(organization=billed), 20)
            use(DeveloperFactory(organization=nobody), 20)
        assert [m.to for m in sent()] == [["billing@acme.test"]]
        assert AlertSent.objects.get(organization=nobody).recipients == 0

    def test_a_rolled_back_transaction_records_and_mails_nothing(self, acme, committed):
        _org, owner = acme
        with committed():
            try:
                with transaction.atomic():
                    use(owner, 20)
                    raise RuntimeError("the request failed after the usage was written")
            except RuntimeError:
                pass
        assert sent() == []
        assert not AlertSent.objects.exists()
        with committed():
            use(owner, 20)  # this process did not take the rolled-back alert for sent
        assert len(sent()) == 2

    def test_a_month_is_its_own_period(self, acme, committed):
        org, owner = acme
        with committed():
            use(owner, 20)
        january = datetime.datetime(2030, 1, 3, tzinfo=datetime.UTC)
        assert alerts.month_period(january) == "2030-01"
        with committed():
            assert alerts.check_caps([org.pk], now=january) == []  # no calls in January 2030

    @pytest.mark.django_db(transaction=True)
    def test_metering_async_path_checks_after_writing(self):
        org = capped_org()
        owner = DeveloperFactory(organization=org, role=Role.OWNER, email="async-owner@acme.test")
        call = {
            "developer_id": owner.pk,
            "organization_id": org.pk,
            "tool_name": "whoami",
            "ok": True,
            "duration_ms": 1,
        }

        async def flush() -> None:
            try:
                assert await services.arecord_usages([call] * 20) == [None] * 20
                await alerts.settle()
            finally:
                await aclose()  # the loop's PostgreSQL connection: left open, the test database could not be dropped

        asyncio.run(flush())
        assert [m.to for m in sent()] == [["async-owner@acme.test"]]
        assert AlertSent.objects.get(organization=org).kind == AlertKind.CAP_100


def test_the_command_checks_every_organization_with_calls_this_month(committed):
    org = capped_org()
    owner = DeveloperFactory(organization=org, role=Role.OWNER, email="cron-owner@acme.test")
    UsageRollupFactory(developer=owner, calls=17)  # written around the writers: no check yet
    UsageRollupFactory(developer=DeveloperFactory(organization=capped_org(calls_per_seat=1000)), calls=17)
    out = io.StringIO()
    with committed():
        call_command("alerts", "check", stdout=out)
    assert out.getvalue() == "Checked 2 organizations with calls this month: 1 alert sent.\n"
    assert [m.to for m in sent()] == [["cron-owner@acme.test"]]
    with committed():
        call_command("alerts", "check", stdout=out)
    assert len(sent()) == 1


class TestPastDue:
    def test_a_failed_payment_mails_the_owners_once_a_day(self, acme, committed):
        org, _ = acme
        with committed():
            services.set_status(organization=org, status=SubscriptionStatus.PAST_DUE)
        mails = sent()
        assert len(mails) == 2
        assert mails[0].subject == "Payment failed for Acme on Hotcross"
        assert "the subscription is past due" in mails[0].body
        assert "keys are refused" in mails[0].body  # past_due is not an allowed status by default
        assert "https://hotcross.example/org/billing/" in mails[0].body
        with committed():
            services.set_status(organization=org, status=SubscriptionStatus.ACTIVE)
            services.set_status(organization=org, status=SubscriptionStatus.PAST_DUE)
        assert len(sent()) == 2
        tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        with committed():
            assert alerts.past_due(org, now=tomorrow) is not None
        assert len(sent()) == 4

    def test_keys_that_keep_working_are_said_to(self, acme, committed, settings):
        settings.HOTCROSS_ALLOWED_STATUSES = ["active", "trialing", "past_due"]
        org, _ = acme
        with committed():
            services.set_status(organization=org, status=SubscriptionStatus.PAST_DUE)
        assert "keys keep working while Stripe tries the payment again" in sent()[0].body

    def test_the_stripe_webhook_path_alerts_too(self, acme, committed):
        org, _ = acme
        with committed():
            services.apply_subscription_state(
                stripe_customer_id=org.stripe_customer_id,
                status="past_due",
                subscription_id="sub_1",
                seats=None,
                pricing_model=None,
            )
        assert len(sent()) == 2
        assert AlertSent.objects.get().kind == AlertKind.PAST_DUE


class TestSeatsShort:
    def test_lowering_seats_below_the_holders_names_the_refused_once_a_day(self, committed):
        org = OrganizationFactory(name="Acme", max_seats=4)
        DeveloperFactory(organization=org, email="owner@acme.test", role=Role.OWNER, api_key_hash=None)
        holders = [DeveloperFactory(organization=org, email=f"dev{i}@acme.test") for i in range(4)]
        with committed():
            services.set_seats(organization=org, max_seats=2)
        (message,) = sent()
        assert message.to == ["owner@acme.test"]
        assert message.subject == "Acme: 2 members are refused for lack of seats"
        assert "the 2 newest seat holders are refused (seat_limit_exceeded)" in message.body
        assert f"- {holders[2].email}\n- {holders[3].email}" in message.body
        assert holders[0].email not in message.body
        assert "https://hotcross.example/org/billing/" in message.body
        with committed():
            services.set_seats(organization=org, max_seats=1)  # the same day: not mailed again
        assert len(sent()) == 1

    def test_raising_seats_or_lowering_within_the_holders_mails_nothing(self, committed):
        org = OrganizationFactory(max_seats=1)
        DeveloperFactory(organization=org, role=Role.OWNER)
        DeveloperFactory(organization=org)
        with committed():
            services.set_seats(organization=org, max_seats=5)
            services.set_seats(organization=org, max_seats=3)
            services.set_seats(organization=org, max_seats=3)
        assert sent() == []

    def test_the_stripe_webhook_path_alerts_too(self, committed):
        org = OrganizationFactory(name="Acme", max_seats=2)
        owner = DeveloperFactory(organization=org, role=Role.OWNER)
        newest = DeveloperFactory(organization=org)
        with committed():
            services.apply_subscription_state(
                stripe_customer_id=org.stripe_customer_id,
                status=None,
                subscription_id="sub_1",
                seats=1,
                pricing_model=None,
            )
        (message,) = sent()
        assert message.to == [owner.email] and newest.email in message.body
        assert message.subject == "Acme: a member is refused for lack of seats"


def test_a_check_the_database_did_not_answer_is_one_line_without_a_traceback(caplog):
    """A database outage is one log line (the stdio server's stderr stays readable, tests/mcp_bridge/test_outage.py);
    any other failure of a check keeps its traceback."""
    from django.db import OperationalError

    with caplog.at_level("WARNING", logger="accounts.alerts"):
        alerts._not_checked([1, 2], OperationalError("server closed the connection unexpectedly"))
        alerts._not_checked([3], ValueError("a mistake"))
    outage, mistake = caplog.records
    assert "the database did not answer (OperationalError)" in outage.getMessage() and outage.exc_info is None
    assert mistake.exc_info is not None
