"""`manage.py billing …`: report-usage (once, a restart mid-report, the loop), status, bad arguments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.billing import usage
from accounts.models import MeterReport, MeterReportState, UsageBillingState
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support.database import database_url
from tests.support.meters import HOUR, billed_org, calls, ident, make_plan, now_hour
from tests.support.servers import ROOT, stop_process
from tests.support.stripe_stub import METER_EVENTS, StripeStub

KEY = "sk_test_hotcrossFakeKeyForTestsOnly0000"


def command_env(stub: StripeStub) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HOTCROSS_", "DATABASE_", "STRIPE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="hotcross.settings",
        DATABASE_URL=database_url(),
        SECRET_KEY="tests-only-billing-command",
        DEBUG="false",
        DOTENV_FILE="",
        STRIPE_TEST_SECRET_KEY=KEY,
        STRIPE_API_HOST=stub.url,
        STRIPE_MAX_NETWORK_RETRIES="0",
        HOTCROSS_METER_BACKOFF_SECONDS="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_command(stub: StripeStub, *args: str) -> subprocess.Popen:
    """`manage.py billing …` on the test database, Stripe being the stub (stopped with `stop_process`)."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "billing", *args],
        cwd=ROOT,
        env=command_env(stub),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.django_db(transaction=True)
def test_a_restart_mid_report_neither_duplicates_nor_skips(stripe_stub: StripeStub) -> None:
    h = now_hour()
    organization = billed_org(make_plan(), h - 4 * HOUR)
    developer = DeveloperFactory(organization=organization)
    calls(developer, h - 3 * HOUR, 2)
    calls(developer, h - 2 * HOUR, 5)

    # Stripe takes the first event, and its answer is held while the command process is killed: sent, not recorded.
    with stripe_stub.holding(METER_EVENTS) as hold:
        process = start_command(stripe_stub, "report-usage")
        try:
            assert hold.arrived.wait(timeout=60), (
                process.communicate(timeout=5)[0] if process.poll() is not None else ""
            )
        finally:
            stop_process(process, signal.SIGKILL)
    first, second = ident(organization, h - 3 * HOUR), ident(organization, h - 2 * HOUR)
    assert stripe_stub.accepted_values() == {first: 2}
    assert set(MeterReport.objects.values_list("identifier", "state")) == {
        (first, MeterReportState.PENDING),
        (second, MeterReportState.PENDING),
    }

    # The restart: the same reports, the same identifiers; Stripe's duplicate answer marks the first accepted.
    process = start_command(stripe_stub, "report-usage")
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    assert "1 accepted, 1 already at Stripe" in out
    assert stripe_stub.accepted_values() == {first: 2, second: 5}
    assert stripe_stub.meter_event_posts == [first, first, second]
    assert set(MeterReport.objects.values_list("state", flat=True)) == {MeterReportState.ACCEPTED}


@pytest.mark.django_db(transaction=True)
def test_the_loop_runs_until_sigterm_and_exits_cleanly(stripe_stub: StripeStub) -> None:
    h = now_hour()
    organization = billed_org(make_plan(), h - 3 * HOUR)
    calls(DeveloperFactory(organization=organization), h - 2 * HOUR, 3)

    process = start_command(stripe_stub, "report-usage", "--loop", "10")
    try:
        deadline = time.monotonic() + 60
        while not stripe_stub.meter_events and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert stripe_stub.accepted_values() == {ident(organization, h - 2 * HOUR): 3}
        # The run records what Stripe accepted, then waits for the next: SIGTERM comes once it has recorded.
        while not MeterReport.objects.filter(state=MeterReportState.ACCEPTED).exists():
            assert time.monotonic() < deadline and process.poll() is None, "the run never recorded the report"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    finally:
        stop_process(process)
    assert process.returncode == 0, out
    assert "Reporting usage every 10 s" in out and "Stopping after this run." in out
    assert MeterReport.objects.get().state == MeterReportState.ACCEPTED


@pytest.mark.django_db
def test_report_usage_says_what_it_did_and_fails_when_stripe_refuses(stripe_stub: StripeStub, settings: Any) -> None:
    settings.HOTCROSS_METER_TRIES = 1
    h = now_hour()
    organization = billed_org(make_plan(), h - 3 * HOUR)
    calls(DeveloperFactory(organization=organization), h - 2 * HOUR, 3)
    stripe_stub.fail_next(METER_EVENTS, 500)
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError, match="1 report not accepted by Stripe; tried again next run"):
        call_command("billing", "report-usage", stdout=out, stderr=err)
    assert "1 organization billed by usage; 1 new report; sent: 0 accepted" in out.getvalue()
    assert "HTTP 500" in err.getvalue()

    out = StringIO()
    call_command("billing", "report-usage", stdout=out)
    assert "0 new reports; sent: 1 accepted" in out.getvalue() and "0 pending" in out.getvalue()


@pytest.mark.django_db
def test_status_shows_reported_up_to_pending_and_the_last_error(stripe_stub: StripeStub, settings: Any) -> None:
    settings.HOTCROSS_METER_TRIES = 1
    h = now_hour()
    organization = billed_org(make_plan(), h - 4 * HOUR, name="Metered Co")
    developer = DeveloperFactory(organization=organization)
    calls(developer, h - 3 * HOUR, 2)
    calls(developer, h - 2 * HOUR, 4)
    stripe_stub.fail_next(METER_EVENTS, 200, 400)  # the second is refused
    usage.report_usage(sleep=lambda seconds: None)

    out = StringIO()
    call_command("billing", "status", stdout=out)
    text = out.getvalue()
    assert "Metered Co" in text
    assert f"reported up to: {h - 2 * HOUR:%Y-%m-%d %H:%M} UTC" in text
    assert "pending: 1 report (4)" in text
    assert "last error" in text and "HTTP 400" in text

    out = StringIO()
    call_command("billing", "status", "--organization", str(organization.pk), stdout=out)
    assert "Metered Co" in out.getvalue()


@pytest.mark.django_db
def test_status_of_an_organization_not_billed_by_usage() -> None:
    organization = OrganizationFactory(name="Flat Co")
    out = StringIO()
    call_command("billing", "status", "--organization", str(organization.pk), stdout=out)
    assert "not billed by usage" in out.getvalue()
    out = StringIO()
    call_command("billing", "status", stdout=out)
    assert "No organization is billed by usage" in out.getvalue()
    assert not UsageBillingState.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report-usage", "--loop", "soon"], "'soon' is not a number of seconds"),
        (["report-usage", "--loop", "1"], "at least 10 seconds"),
        (["report-usage", "--loop", "nan"], "at least 10 seconds"),
        (["status", "--organization", "nope"], "No organization has the id 'nope'"),
        (["status", "--organization", "00000000-0000-0000-0000-000000000000"], "No organization has the id"),
        (["refund"], "invalid choice"),
    ],
)
def test_bad_arguments_are_clear_errors(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("billing", *args, stdout=StringIO(), stderr=StringIO())
    assert not MeterReport.objects.exists()
