#!/usr/bin/env python
"""Django's command-line utility for the Hotcross back office.

A missing or unusable setting, or a database that cannot be reached or has not been migrated, is one line on stderr
and a non-zero exit status, never a traceback.
"""

import os
import sys


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


def database_problem(exc: Exception) -> str:
    """One line for a database error that escaped a command: not migrated, unreachable, or something else."""
    from django.db import ProgrammingError, connection

    cause = exc.__cause__
    missing = getattr(cause, "sqlstate", None) in {"42P01", "42703"} or (  # PostgreSQL: undefined table / column
        connection.vendor == "sqlite" and str(exc).startswith(("no such table", "no such column"))
    )
    if missing:
        return (
            f"The database has not been migrated ({str(exc).strip().splitlines()[0]}): "
            "run `.venv/bin/python manage.py migrate` (make run does it), then try again."
        )
    if isinstance(exc, ProgrammingError):
        return f"Database error: {one_line(exc)}"
    return (
        f"Hotcross cannot reach its database ({connection.vendor}, {connection.settings_dict.get('NAME')}): "
        f"{one_line(exc)}. Check DATABASE_URL and that the database server is running."
    )


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotcross.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    from mcp_bridge import checks

    # A command that never loads an MCP tool (orgs, migrate, …) starts without importing the MCP SDK for the system
    # check of the tool modules: `manage.py check` does that check (mcp_bridge/checks.py).
    checks.for_command(sys.argv[1] if len(sys.argv) > 1 else "help")
    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"Configuration error: {one_line(exc)}\n")
        sys.exit(2)
    except DatabaseError as exc:
        sys.stderr.write(database_problem(exc) + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
