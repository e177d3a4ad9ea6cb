"""Usage billing through Stripe Billing meters: what is reported, once per interval, through the local Stripe stub."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import stripe

from accounts.billing import meter_events, usage
from accounts.choices import MeteredBilling
from accounts.models import MeterReport, MeterReportState, UsageBillingState
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support.meters import HOUR, billed_org, calls, ident, make_plan, now_hour, run
from tests.support.stripe_stub import METER_EVENTS, StripeStub

pytestmark = pytest.mark.django_db


def test_all_calls_are_reported_once_per_interval_with_their_count(stripe_stub: StripeStub) -> None:
    h = now_hour()
    organization = billed_org(make_plan(), h - 5 * HOUR)
    developer = DeveloperFactory(organization=organization)
    calls(developer, h - 4 * HOUR + datetime.timedelta(minutes=10), 3)
    calls(developer, h - 2 * HOUR + datetime.timedelta(minutes=59), 2)

    result = run(h + datetime.timedelta(minutes=10))

    assert stripe_stub.accepted_values(organization.stripe_customer_id) == {
        ident(organization, h - 4 * HOUR): 3,
        ident(organization, h - 2 * HOUR): 2,
    }
    assert result.accepted == 2 and result.failed == 0
    event = stripe_stub.meter_events[ident(organization, h - 4 * HOUR)]
    assert event["event_name"] == "hotcross_calls"
    assert event["timestamp"] == int((h - 3 * HOUR).timestamp()) - 1  # inside its interval
    # Another run: nothing new, nothing sent again.
    posts = len(stripe_stub.meter_event_posts)
    assert run(h + datetime.timedelta(minutes=50)).planned == 0
    assert len(stripe_stub.meter_event_posts) == posts
    assert MeterReport.objects.filter(state=MeterReportState.ACCEPTED).count() == 2


def test_the_current_interval_waits_until_it_is_over_and_settled(stripe_stub: StripeStub, settings: Any) -> None:
    settings.HOTCROSS_METER_SETTLE_SECONDS = 300
    h = now_hour()
    organization = billed_org(make_plan(), h - 2 * HOUR)
    developer = DeveloperFactory(organization=organization)
    calls(developer, h - HOUR + datetime.timedelta(minutes=58), 1)

    run(h + datetime.timedelta(minutes=2))  # the last hour is over, but not settled
    assert stripe_stub.meter_events == {}
    run(h + datetime.timedelta(minutes=6))
    assert stripe_stub.accepted_values() == {ident(organization, h - HOUR): 1}


def test_overage_bills_only_calls_beyond_the_monthly_cap_split_at_the_crossing(stripe_stub: StripeStub) -> None:
    h = now_hour()
    start = h - 6 * HOUR
    if start.month != h.month:  # the test needs six hours of one month
        h += 7 * HOUR
        start = h - 6 * HOUR
    # Cap: 5 calls per seat × 1 seat.
    organization = billed_org(make_plan(MeteredBilling.OVERAGE, per_seat=5), start, max_seats=1)
    developer = DeveloperFactory(organization=organization)
    calls(developer, start, 3)  # 3 of 5
    calls(developer, start + HOUR, 4)  # crosses: 7, 2 beyond
    calls(developer, start + 3 * HOUR, 3)  # 10, 3 beyond

    run(h + datetime.timedelta(minutes=10))

    assert stripe_stub.accepted_values() == {
        ident(organization, start + HOUR): 2,
        ident(organization, start + 3 * HOUR): 3,
    }


def test_overage_counts_the_month_before_billing_started_and_restarts_each_month(stripe_stub: StripeStub) -> None:
    month = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    organization = billed_org(make_plan(MeteredBilling.OVERAGE, per_seat=5), month + 10 * 24 * HOUR, max_seats=1)
    developer = DeveloperFactory(organization=organization)
    calls(developer, month + 24 * HOUR, 4)  # before billing started: counts toward the cap, never reported
    calls(developer, month + 10 * 24 * HOUR + 2 * HOUR, 3)  # 7: 2 beyond
    calls(developer, month + 31 * 24 * HOUR + HOUR, 3)  # February: 3 of 5

    billed = usage.billed_per_interval(organization, organization.plan, month + 10 * 24 * HOUR, month + 32 * 24 * HOUR)
    assert {start: value for start, value in billed.items() if value} == {month + 10 * 24 * HOUR + 2 * HOUR: 2}


def test_late_calls_are_reported_as_a_correction_never_twice(stripe_stub: StripeStub) -> None:
    h = now_hour()
    organization = billed_org(make_plan(), h - 5 * HOUR)
    developer = DeveloperFactory(organization=organization)
    calls(developer, h - 4 * HOUR, 2)
    run(h + datetime.timedelta(minutes=10))

    # Two calls of that hour arrive late (the API's window, the spool), one of an hour that had none.
    calls(developer, h - 4 * HOUR + datetime.timedelta(minutes=30), 2)
    calls(developer, h - 3 * HOUR + datetime.timedelta(minutes=30), 1)
    run(h + datetime.timedelta(minutes=20))
    run(h + datetime.timedelta(minutes=30))

    assert stripe_stub.accepted_values() == {
        ident(organization, h - 4 * HOUR): 2,
        ident(organization, h - 4 * HOUR, 1): 2,
        ident(organization, h - 3 * HOUR): 1,
    }
    assert sorted(stripe_stub.meter_event_posts) == sorted(stripe_stub.meter_events)


def test_a_late_call_before_the_crossing_moves_the_overage_into_the_crossing_interval(stripe_stub: StripeStub) -> None:
    h = now_hour()
    start = h - 6 * HOUR
    if start.month != h.month:
        h += 7 * HOUR
        start = h - 6 * HOUR
    organization = billed_org(make_plan(MeteredBilling.OVERAGE, per_seat=5), start, max_seats=1)
    developer = DeveloperFactory(organization=organization)
    calls(developer, start, 3)
    calls(developer, start + 2 * HOUR, 4)  # 7: 2 beyond
    run(h + datetime.timedelta(minutes=10))
    calls(
        developer, start + datetime.timedelta(minutes=5), 1
    )  # late, below the cap then: one more beyond at the crossing
    run(h + datetime.timedelta(minutes=20))

    assert stripe_stub.accepted_values() == {
        ident(organization, start + 2 * HOUR): 2,
        ident(organization, start + 2 * HOUR, 1): 1,
    }


def test_a_stub_answering_500_then_200_gives_exactly_one_accepted_report(stripe_stub: StripeStub) -> None:
    h = now_hour()
    organization = billed_org(make_plan(), h - 3 * HOUR)
    calls(DeveloperFactory(organization=organization), h - 2 * HOUR, 4)
    stripe_stub.fail_next(METER_EVENTS, 500, 429)
    waits: list[float] = []

    result = usage.report_usage(h + datetime.timedelta(minutes=10), sleep=waits.append)

    identifier = ident(organization, h - 2 * HOUR)
    assert stripe_stub.requested(METER_EVENTS) == [METER_EVENTS] * 3
    assert stripe_stub.meter_event_posts == [identifier]  # the two failures never reached Stripe's checks
    assert stripe_stub.accepted_values() == {identifier: 4}
    assert waits == [1.0, 2.0]  # backoff, doubling
    report = MeterReport.objects.get()
    assert (report.state, report.attempts, report.last_error) == (MeterReportState.ACCEPTED, 3, "")
    assert result.accepted == 1


def test_an_answer_lost_after_stripe_kept_the_event_is_recognized_as_a_duplicate(stripe_stub: StripeStub) -> None:
    h = now_hour()
    organization = billed_org(make_plan(), h - 3 * HOUR)
    calls(DeveloperFactory(organization=organization), h - 2 * HOUR, 4)
    stripe_stub.fail_next(METER_EVENTS, 502, after_accepting=True)

    result = run(h + datetime.timedelta(minutes=10))

    identifier = ident(organization, h - 2 * HOUR)
    assert stripe_stub.meter_event_posts == [identifier, identifier]
    assert stripe_stub.accepted_values() == {identifier: 4}
    assert result.duplicates == 1
    assert MeterReport.objects.get().state == MeterReportState.ACCEPTED


def test_stripe_errors_beyond_the_retries_leave_the_report_pending_with_the_error(
    stripe_stub: StripeStub, settings: Any
) -> None:
    settings.HOTCROSS_METER_TRIES = 2
    h = now_hour()
    organization = billed_org(make_plan(), h - 3 * HOUR)
    calls(DeveloperFactory(organization=organization), h - 2 * HOUR, 1)
    calls(DeveloperFactory(organization=organization), h - HOUR, 1)
    stripe_stub.fail_next(METER_EVENTS, 503, 503, 400)

    result = run(h + datetime.timedelta(minutes=10))

    # The first gave up after two tries, the second was refused (no retry): neither is skipped.
    assert result.failed == 2 and stripe_stub.meter_events == {}
    assert MeterReport.objects.filter(state=MeterReportState.PENDING).count() == 2
    state = UsageBillingState.objects.get(organization=organization)
    assert "HTTP 400" in state.last_error
    assert usage.usage_billing_status(organization).pending_value == 2

    run(h + datetime.timedelta(minutes=20))
    assert stripe_stub.accepted_values() == {ident(organization, h - 2 * HOUR): 1, ident(organization, h - HOUR): 1}
    assert MeterReport.objects.filter(state=MeterReportState.PENDING).count() == 0


def test_organizations_without_a_metered_plan_or_a_customer_are_not_reported(stripe_stub: StripeStub) -> None:
    h = now_hour()
    since = h - 3 * HOUR
    unmetered = billed_org(make_plan(MeteredBilling.NONE), since)
    no_meter = billed_org(make_plan(event_name=""), since)
    no_customer = billed_org(make_plan(), since, stripe_customer_id=None)
    no_plan = OrganizationFactory()
    for organization in (unmetered, no_meter, no_customer, no_plan):
        calls(DeveloperFactory(organization=organization), h - 2 * HOUR, 2)

    result = run(h + datetime.timedelta(minutes=10))

    assert result.organizations == 0
    assert stripe_stub.meter_event_posts == [] and MeterReport.objects.count() == 0


def test_the_default_plan_bills_organizations_without_their_own(stripe_stub: StripeStub, settings: Any) -> None:
    h = now_hour()
    plan = make_plan()
    settings.HOTCROSS_DEFAULT_PLAN = plan.code
    organization = OrganizationFactory()
    UsageBillingState.objects.create(organization=organization, billing_since=h - 3 * HOUR, planned_until=h - 3 * HOUR)
    calls(DeveloperFactory(organization=organization), h - 2 * HOUR, 2)

    run(h + datetime.timedelta(minutes=10))
    assert stripe_stub.accepted_values() == {ident(organization, h - 2 * HOUR): 2}


def test_an_organization_first_seen_billable_is_billed_from_then_on(stripe_stub: StripeStub) -> None:
    h = now_hour() - 2 * HOUR  # runs in the past: Stripe takes no timestamp from the future
    organization = OrganizationFactory(plan=make_plan())
    developer = DeveloperFactory(organization=organization)
    calls(developer, h - 2 * HOUR, 5)  # before it was billed by usage

    run(h + datetime.timedelta(minutes=10))
    calls(developer, h + datetime.timedelta(minutes=30), 1)
    run(h + HOUR + datetime.timedelta(minutes=10))

    assert stripe_stub.accepted_values() == {ident(organization, h): 1}


def test_a_run_after_a_long_stop_reports_every_interval_missed(stripe_stub: StripeStub, settings: Any) -> None:
    settings.HOTCROSS_METER_LATE_HOURS = 1
    h = now_hour()
    organization = billed_org(make_plan(), h - 60 * HOUR)
    developer = DeveloperFactory(organization=organization)
    hours = [h - 59 * HOUR, h - 30 * HOUR, h - 2 * HOUR]
    for moment in hours:
        calls(developer, moment, 1)

    run(h + datetime.timedelta(minutes=10))
    assert stripe_stub.accepted_values() == {ident(organization, moment): 1 for moment in hours}


def test_reports_too_old_for_stripe_are_marked_expired_not_sent(stripe_stub: StripeStub) -> None:
    h = now_hour()
    organization = billed_org(make_plan(), h - 3 * HOUR)
    old = h - 40 * 24 * HOUR
    MeterReport.objects.create(
        organization=organization,
        interval_start=old,
        interval_end=old + HOUR,
        identifier=ident(organization, old),
        event_name="hotcross_calls",
        stripe_customer_id=organization.stripe_customer_id,
        value=3,
        timestamp=old + HOUR - datetime.timedelta(seconds=1),
    )
    result = run(h + datetime.timedelta(minutes=10))
    assert result.expired == 1 and stripe_stub.meter_event_posts == []
    assert MeterReport.objects.get().state == MeterReportState.EXPIRED
    assert "35 days" in UsageBillingState.objects.get(organization=organization).last_error


def test_the_stubs_meter_events_have_the_librarys_shape_and_stripes_duplicate_answer(stripe_stub: StripeStub) -> None:
    now = int(datetime.datetime.now(datetime.UTC).timestamp())
    params = {
        "api_key": "sk_test_hotcrossFakeKeyForTestsOnly0000",
        "event_name": "hotcross_calls",
        "payload": {"stripe_customer_id": "cus_x", "value": "3"},
        "identifier": "hotcross-shape",
        "timestamp": now - 60,
    }
    event = stripe.billing.MeterEvent.create(**params)
    assert isinstance(event, stripe.billing.MeterEvent)
    assert (event.identifier, event.event_name, event.payload["value"], event.timestamp) == (
        "hotcross-shape",
        "hotcross_calls",
        "3",
        now - 60,
    )
    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        stripe.billing.MeterEvent.create(**params)
    assert meter_events.is_duplicate_identifier(duplicate.value)
    with pytest.raises(stripe.InvalidRequestError) as too_old:
        stripe.billing.MeterEvent.create(**{**params, "identifier": "other", "timestamp": now - 36 * 24 * 3600})
    assert not meter_events.is_duplicate_identifier(too_old.value)
    assert not meter_events.is_retryable(too_old.value)


def test_stripe_window_and_identifiers() -> None:
    now = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
    assert meter_events.within_stripe_window(now - datetime.timedelta(days=34), now)
    assert not meter_events.within_stripe_window(now - datetime.timedelta(days=35), now)
    assert not meter_events.within_stripe_window(now + datetime.timedelta(minutes=6), now)
    organization_id = OrganizationFactory().pk
    assert len(usage.identifier(organization_id, now, 12)) <= 100
    assert usage.identifier(organization_id, now, 0) == usage.identifier(organization_id, now, 0)
    assert usage.identifier(organization_id, now, 0) != usage.identifier(organization_id, now, 1)


def test_the_upcoming_invoice_is_read_through_the_stripe_library(stripe_stub: StripeStub) -> None:
    from tests.support import stripe_data

    customer = stripe_data.customer()
    stripe_stub.put(customer)
    stripe_stub.base_lines[customer["id"]] = [{"description": "Seats", "quantity": 3, "amount": 3000}]
    stripe_stub.unit_amounts["hotcross_calls"] = 2
    h = now_hour()
    organization = billed_org(make_plan(), h - 3 * HOUR, stripe_customer_id=customer["id"])
    calls(DeveloperFactory(organization=organization), h - 2 * HOUR, 7)
    run(h + datetime.timedelta(minutes=10))

    invoice = meter_events.upcoming_invoice(customer["id"])

    assert invoice.total == 3000 + 14
    assert [(line.description, line.amount) for line in invoice.lines] == [
        ("Seats", 3000),
        ("7 × hotcross_calls", 14),
    ]
    assert invoice.total_display == "30.14 USD"
    # The stub's answer is the library's own Invoice.
    raw = stripe.StripeClient("sk_test_x", base_addresses={"api": stripe_stub.url}).v1.invoices.create_preview(
        {"customer": customer["id"]}
    )
    assert isinstance(raw, stripe.Invoice) and isinstance(raw.lines.data[0], stripe.InvoiceLineItem)


def test_the_upcoming_invoice_says_why_when_stripe_cannot_be_asked(stripe_stub: StripeStub, settings: Any) -> None:
    from accounts.billing.config import StripeUnavailable

    with pytest.raises(StripeUnavailable, match="No such customer"):
        meter_events.upcoming_invoice("cus_missing")
    settings.STRIPE_TEST_SECRET_KEY = ""
    with pytest.raises(StripeUnavailable, match="STRIPE_TEST_SECRET_KEY"):
        meter_events.upcoming_invoice("cus_missing")


def test_an_organization_leaving_a_metered_plan_starts_afresh_when_it_returns(stripe_stub: StripeStub) -> None:
    h = now_hour() - 6 * HOUR  # every run below is in the past
    metered, flat = make_plan(), make_plan(MeteredBilling.NONE)
    organization = billed_org(metered, h - 2 * HOUR)
    developer = DeveloperFactory(organization=organization)
    calls(developer, h - HOUR, 1)
    run(h + datetime.timedelta(minutes=10))  # reports h-1

    organization.plan = flat
    organization.save()
    calls(developer, h + HOUR, 5)  # on the flat plan: never billed by usage
    run(h + 2 * HOUR + datetime.timedelta(minutes=10))
    assert UsageBillingState.objects.get(organization=organization).billing_since is None

    organization.plan = metered
    organization.save()
    run(h + 3 * HOUR + datetime.timedelta(minutes=10))  # seen billable again: billed from this interval on
    calls(developer, h + 3 * HOUR + datetime.timedelta(minutes=20), 2)
    run(h + 4 * HOUR + datetime.timedelta(minutes=10))

    assert stripe_stub.accepted_values() == {ident(organization, h - HOUR): 1, ident(organization, h + 3 * HOUR): 2}


def test_longer_intervals_divide_the_day(stripe_stub: StripeStub, settings: Any) -> None:
    settings.HOTCROSS_METER_INTERVAL_MINUTES = 360
    moment = datetime.datetime(2026, 5, 4, 13, 37, tzinfo=datetime.UTC)
    assert usage.interval_start(moment) == datetime.datetime(2026, 5, 4, 12, tzinfo=datetime.UTC)
    organization = OrganizationFactory(plan=make_plan())
    developer = DeveloperFactory(organization=organization)
    calls(developer, datetime.datetime(2026, 5, 4, 6, 5, tzinfo=datetime.UTC), 2)
    calls(developer, datetime.datetime(2026, 5, 4, 11, 59, tzinfo=datetime.UTC), 1)
    calls(developer, datetime.datetime(2026, 5, 4, 12, 0, tzinfo=datetime.UTC), 4)
    billed = usage.billed_per_interval(
        organization,
        organization.plan,
        datetime.datetime(2026, 5, 4, tzinfo=datetime.UTC),
        datetime.datetime(2026, 5, 5, tzinfo=datetime.UTC),
    )
    assert [value for _, value in sorted(billed.items())] == [0, 3, 4, 0]
