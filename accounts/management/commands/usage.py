"""`manage.py usage …`: the usage rollups and the raw usage events.

- `usage rebuild-rollups --since DAY [--until DAY]`: rebuild the rollups of those UTC days from the raw events.
- `usage rebuild-rollups --since DAY [--until DAY] --check`: only compare them (exit 1 when they differ).
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from accounts.exceptions import AccountsError
from accounts.services import usage as usage_services
from accounts.wording import plural


def _day(value: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value.strip())
    except ValueError:
        raise CommandError(f"'{value}' is not a day: write it as YYYY-MM-DD (a UTC day).") from None


class Command(BaseCommand):
    help = "Usage rollups and raw usage events: rebuild-rollups (or --check them)."

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

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "rebuild-rollups":
                self._rebuild(options)
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
