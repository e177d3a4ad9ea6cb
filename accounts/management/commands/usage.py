"""`manage.py usage …`: the usage rollups and the raw usage events.

- `usage rebuild-rollups --since DAY [--until DAY]`: rebuild the rollups of those UTC days from the raw events.
- `usage rebuild-rollups --since DAY [--until DAY] --check`: only compare them (exit 1 when they differ).
- `usage partitions [--ahead N]`: PostgreSQL: create the raw events' month partitions ahead, and list them.
- `usage prune`: drop raw events older than the retention, by whole months (rollups stay), and the key-check API's
  idempotency records older than its usage window plus an hour.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from accounts import partitions
from accounts.exceptions import AccountsError
from accounts.services import usage_upkeep as usage_services
from accounts.signals import usage_prune_requested
from accounts.wording import plural


def _day(value: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value.strip())
    except ValueError:
        raise CommandError(f"'{value}' is not a day: write it as YYYY-MM-DD (a UTC day).") from None


class Command(BaseCommand):
    help = "Usage rollups and raw usage events: rebuild-rollups (or --check them), partitions, prune."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        rebuild = actions.add_parser(
            "rebuild-rollups",
            help="rebuild the rollups of a range of UTC days from the raw events (or --check them)",
            description="Rebuild the usage rollups of the UTC days [--since, --until) from the raw usage events, "
            "in one transaction; with --check, only compare them and exit 1 when they differ.",
        )
        rebuild.add_argument("--since", required=True, help="first UTC day, YYYY-MM-DD")
        rebuild.add_argument("--until", help="the day after the last, YYYY-MM-DD (default: no end)")
        rebuild.add_argument("--check", action="store_true", help="compare only; change nothing")
        ahead = actions.add_parser(
            "partitions",
            help="PostgreSQL: create the raw usage events' month partitions ahead, and list them",
            description="Create the month partitions of the raw usage events from this month to --ahead months "
            "ahead (those missing), then list them. Run it daily (cron); events of a month without a partition go "
            "to the default partition meanwhile, and creating the month's partition moves them there.",
        )
        ahead.add_argument("--ahead", type=int, default=3, help="months ahead (default 3)")
        actions.add_parser(
            "prune",
            help="drop raw usage events older than the retention, by whole months (the rollups stay), and the key-check"
            " API's old idempotency records",
            description="Drop the raw usage events older than HOTCROSS_USAGE_RAW_RETENTION_DAYS by whole months: "
            "PostgreSQL drops the month partitions, SQLite deletes the rows. The rollups stay. Also delete the "
            "client event ids of POST /api/v1/usage older than HOTCROSS_API_USAGE_WINDOW_HOURS plus an hour (a "
            "retry that old is refused anyway). Run it daily (cron).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "rebuild-rollups":
                self._rebuild(options)
            elif options["action"] == "partitions":
                self._partitions(options["ahead"])
            elif options["action"] == "prune":
                self._prune()
        except AccountsError as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"The database refused: {exc}".strip()) from None

    def _rebuild(self, options: dict[str, Any]) -> None:
        since = _day(options["since"])
        until = _day(options["until"]) if options["until"] else None
        days = f"{since}…{until - datetime.timedelta(days=1)}" if until else f"{since} onwards"
        if options["check"]:
            differences = usage_services.check_rollups(since=since, until=until)
            if not differences:
                self.stdout.write(f"Rollups of {days} equal the raw events.")
                return
            for d in differences[:50]:
                self.stdout.write(
                    f"{d.day} organization {d.organization_id} developer {d.developer_id} tool {d.tool_name}: "
                    f"events (calls, errors, ms) {d.events}, rollup {d.rollup}"
                )
            raise CommandError(
                f"{plural(len(differences), 'rollup')} of {days} differ from the raw events "
                f"(manage.py usage rebuild-rollups --since {since}{f' --until {until}' if until else ''} fixes them)."
            )
        rows = usage_services.rebuild_rollups(since=since, until=until)
        self.stdout.write(f"Rollups of {days} rebuilt from the raw events: {plural(rows, 'row')}.")

    def _partitions(self, ahead: int) -> None:
        created = usage_services.create_usage_partitions(ahead_months=ahead)
        if not partitions.is_partitioned(connection):
            self.stdout.write("The raw usage events are a plain table here (SQLite): no partitions.")
            return
        for name in created:
            self.stdout.write(f"created {name}")
        for partition in partitions.partitions(connection):
            span = f"{partition.start:%Y-%m}" if partition.start else "default (times without a partition)"
            self.stdout.write(f"{partition.name}: {span}, about {plural(partition.rows or 0, 'event')}")

    def _prune(self) -> None:
        pruned = usage_services.prune_raw_usage()
        if pruned.rows is not None:
            self.stdout.write(f"Deleted {plural(pruned.rows, 'raw usage event')} from before {pruned.before:%Y-%m-%d}.")
        elif pruned.partitions:
            self.stdout.write(f"Dropped {', '.join(pruned.partitions)} (before {pruned.before:%Y-%m-%d}).")
        else:
            self.stdout.write(f"No raw usage events before {pruned.before:%Y-%m-%d} to drop.")
        for _receiver, records in usage_prune_requested.send(sender=self.__class__, now=None):
            self.stdout.write(
                f"Deleted {plural(records.deleted, 'reported event id')} (POST /api/v1/usage) from before "
                f"{records.before:%Y-%m-%d %H:%M} UTC."
            )
        self.stdout.write("The rollups are kept.")
