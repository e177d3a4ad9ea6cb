"""`manage.py usage_spool show|load`: the usage events a stopping MCP server could not write to the database.

A server that stops while the database is unreachable appends its buffered usage events to the spool file
(`HOTCROSS_USAGE_SPOOL`, JSON lines); the next server start writes them. This command shows what waits there, or
writes it now (`load`), through `accounts.services.usage_spool`.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from accounts.services.usage_spool import load_spooled_usages, spool_path, spooled_usages
from accounts.wording import plural


class Command(BaseCommand):
    help = (
        "Show (show) or write to the database (load) the usage events a stopping MCP server could not write "
        "(the HOTCROSS_USAGE_SPOOL file)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["show", "load"], help="show what waits, or load it into the database")
        parser.add_argument("--path", help="the spool file (default: the HOTCROSS_USAGE_SPOOL setting)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        path = spool_path(options["path"])
        try:
            if options["action"] == "show":
                self._show(path, as_json=options["json"])
            else:
                self._load(path, as_json=options["json"])
        except OSError as exc:
            raise CommandError(f"Cannot use the usage spool {path}: {exc.strerror or exc}.") from None

    def _show(self, path: Any, *, as_json: bool) -> None:
        contents = spooled_usages(path)
        calls = contents.calls
        by_tool: dict[str, int] = {}
        for call in calls:
            by_tool[call["tool_name"]] = by_tool.get(call["tool_name"], 0) + 1
        times = sorted(call["created_at"] for call in calls if call.get("created_at"))
        data = {
            "path": str(contents.path),
            "events": len(calls),
            "unreadable_lines": contents.unreadable,
            "oldest": times[0].isoformat() if times else None,
            "newest": times[-1].isoformat() if times else None,
            "by_tool": dict(sorted(by_tool.items())),
        }
        if as_json:
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(f"{contents.path}: {plural(len(calls), 'usage event')} waiting")
        if times:
            self.stdout.write(f"  from {data['oldest']} to {data['newest']}")
        for tool, count in data["by_tool"].items():
            self.stdout.write(f"  {tool}: {count}")
        if contents.unreadable:
            self.stdout.write(f"  {plural(contents.unreadable, 'unreadable line')} (kept in the file)")

    def _load(self, path: Any, *, as_json: bool) -> None:
        try:
            result = load_spooled_usages(path)
        except DatabaseError as exc:
            raise CommandError(
                f"The database cannot be reached ({exc.__class__.__name__}); the events stay in {path}. Try again "
                "once it is back."
            ) from None
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "path": str(result.path),
                        "written": result.written,
                        "dropped": result.dropped,
                        "unreadable_lines": result.unreadable,
                    },
                    indent=2,
                )
            )
            return
        message = f"{result.path}: {plural(result.written, 'usage event')} written"
        if result.dropped:
            message += f", {result.dropped} dropped (their developer no longer exists)"
        if result.unreadable:
            message += f"; {plural(result.unreadable, 'unreadable line')} kept in the file"
        self.stdout.write(message + ".")
