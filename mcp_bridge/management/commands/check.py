"""`manage.py check`: Django's system check, which here also asks the gateway's upstream for its tools.

Starting the upstream (a process, or a connection to a remote server) to compare its tool names with the built-in
ones is worth it when an operator asks for a check, not before every `migrate` or other command that runs the
checks as a matter of course: only this command turns that part on (`mcp_bridge.checks.check_upstream`).
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import check

from mcp_bridge import checks


class Command(check.Command):
    def handle(self, *app_labels: Any, **options: Any) -> None:
        checks.probe_upstream = True
        try:
            super().handle(*app_labels, **options)
        finally:
            checks.probe_upstream = False
