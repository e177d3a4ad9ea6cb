"""`manage.py billing …`: usage billing through Stripe Billing meters (`accounts.billing.usage`).

- `billing report-usage`: one run: work out the settled intervals' reports and send what is pending; exit 1 when
  some report was not accepted (cron mails the output). Run it every few minutes from cron.
- `billing report-usage --loop SECONDS`: run, wait SECONDS, run again… until SIGTERM or Ctrl-C (it finishes the
  report in flight, then exits 0): for a process manager (systemd, supervisord, a container).
- `billing status [--organization ID]`: per organization billed by usage: this month's reported calls, reported up
  to when, pending, the last error.
"""

from __future__ import annotations

import argparse
import signal
import threading
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections

from accounts.billing import usage
from accounts.models import Organization
from accounts.wording import plural

MIN_LOOP_SECONDS = 10.0


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of seconds.") from None
    if not MIN_LOOP_SECONDS <= seconds < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"the loop waits at least {MIN_LOOP_SECONDS:g} seconds between runs.")
    return seconds


class Command(BaseCommand):
    help = "Usage billing through Stripe Billing meters: report-usage (once, or --loop SECONDS), status."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        report = actions.add_parser(
            "report-usage",
            help="report the settled intervals' billable calls to Stripe as meter events, and send what is pending",
            description="Work out each organization's billable calls per settled interval "
            "(HOTCROSS_METER_INTERVAL_MINUTES), record them, and send them to Stripe as meter events with "
            "deterministic identifiers: an interval is never reported twice or skipped, across restarts. "
            "Exits 1 when some report was not accepted (it is tried again next run).",
        )
        report.add_argument(
            "--loop",
            type=_seconds,
            metavar="SECONDS",
            help=f"run again every SECONDS (≥ {MIN_LOOP_SECONDS:g}) until SIGTERM or Ctrl-C",
        )
        status = actions.add_parser(
            "status",
            help="per organization billed by usage: reported this month, reported up to, pending, last error",
        )
        status.add_argument("--organization", metavar="ID", help="one organization (its id)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "report-usage":
                if options["loop"]:
                    self._loop(options["loop"])
                else:
                    self._report_once(raise_on_failure=True)
            else:
                self._status(options["organization"])
        except DatabaseError as exc:
            raise CommandError(f"The database refused: {exc}".strip()) from None

    def _report_once(self, *, raise_on_failure: bool) -> usage.RunResult:
        result = usage.report_usage()
        self.stdout.write(
            f"{plural(result.organizations, 'organization')} billed by usage; "
            f"{plural(result.planned, 'new report')}; sent: {result.accepted} accepted, "
            f"{result.duplicates} already at Stripe, {result.failed} not accepted, {result.expired} too old; "
            f"{result.pending_left} pending."
        )
        for error in result.errors[:20]:
            self.stderr.write(f"  {error}")
        if result.failed and raise_on_failure:
            raise CommandError(f"{plural(result.failed, 'report')} not accepted by Stripe; tried again next run.")
        return result

    def _loop(self, seconds: float) -> None:
        stop = threading.Event()

        def stopping(signum: int, frame: Any) -> None:
            self.stdout.write("Stopping after this run.")
            stop.set()

        previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(f"Reporting usage every {seconds:g} s (SIGTERM or Ctrl-C stops it).")
        try:
            while not stop.is_set():
                close_old_connections()
                try:
                    self._report_once(raise_on_failure=False)
                except DatabaseError as exc:
                    self.stderr.write(f"The database refused: {exc}".strip() + " (trying again next run)")
                stop.wait(seconds)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _status(self, organization_id: str | None) -> None:
        if organization_id is not None:
            try:
                organization = Organization.objects.get(pk=uuid.UUID(organization_id.strip()))
            except (ValueError, Organization.DoesNotExist):
                raise CommandError(f"No organization has the id '{organization_id}'.") from None
            statuses = [usage.usage_billing_status(organization)]
        else:
            statuses = usage.organizations_billed_by_usage()
            if not statuses:
                self.stdout.write("No organization is billed by usage (a plan with metered billing and a customer).")
                return
        for s in statuses:
            self.stdout.write(f"{s.organization.name} ({s.organization.pk})")
            if not s.billed:
                self.stdout.write("  not billed by usage (its plan bills no usage, or it has no Stripe customer)")
            when = f"{s.reported_until:%Y-%m-%d %H:%M} UTC" if s.reported_until else "not yet"
            self.stdout.write(f"  plan: {s.plan.name if s.plan else 'none'}")
            self.stdout.write(f"  reported this month (since {s.period_start:%Y-%m-%d}): {s.period_reported}")
            self.stdout.write(f"  reported up to: {when}")
            self.stdout.write(
                f"  pending: {plural(s.pending_reports, 'report')} ({s.pending_value}); not yet worked out: "
                f"{s.unreported_estimate}"
            )
            if s.last_error:
                self.stdout.write(f"  last error ({s.last_error_at:%Y-%m-%d %H:%M} UTC): {s.last_error}")
