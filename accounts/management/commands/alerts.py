"""`manage.py alerts check`: the monthly cap alerts (80 % and 100 %) of every organization with calls this month, as
the usage writers check them (`accounts.alerts.check_caps`); each mail still goes once per threshold and month. For a
cron job after an outage, or when the servers' checks were off; the servers check on their own after every batch."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from accounts import alerts
from accounts.models import UsageRollup
from accounts.plans import month_start
from accounts.wording import plural
from infra import mailer

BATCH = 500


class Command(BaseCommand):
    help = "Owners' alerts: check (the monthly cap alerts of every organization with calls this month)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        actions.add_parser(
            "check",
            help="mail the 80 %% / 100 %% cap alerts not sent yet this month",
            description="Check every organization with calls this month against its monthly cap and mail the 80 %% "
            "and 100 %% alerts not sent yet (each once per UTC month).",
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        since = month_start(timezone.now()).date()
        ids = list(
            UsageRollup.objects.filter(day__gte=since).order_by().values_list("organization_id", flat=True).distinct()
        )
        sent = []
        for start in range(0, len(ids), BATCH):
            sent += alerts.check_caps(ids[start : start + BATCH])
        mailer.wait_idle(timeout=30)
        self.stdout.write(
            f"Checked {plural(len(ids), 'organization')} with calls this month: {plural(len(sent), 'alert')} sent."
        )
