#!/usr/bin/env python
"""The migration tests' executor (tests/support/migrations.py) against stock Django: the same schema, in less time.

On a scratch database (PostgreSQL, `--server`; or SQLite with `--sqlite`), migrated from nothing by the executor
(which keeps the states between migrations, as when the test database is created), then rolled back to
`accounts 0001` and migrated forward again, as the legacy-conversion tests do:

1. by the executor, its states kept from the creation (what every migration test but the first sees);
2. by the executor again, nothing kept (what the first rollback in a process costs);
3. by stock Django's `MigrationExecutor` (the baseline, measured in the same run).

After each rollback the schema (every table's columns, constraints and indexes, by introspection) must equal the
stock rollback's, and after each forward run the schema of the fully migrated database. Prints seconds per step and
the ratio to stock; exits 1 if a schema differs.

    .venv/bin/python bench/migration_states.py [--sqlite] [--server postgres://…]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, parser, scratch_database

TARGET = ("accounts", "0001_initial")


def schema() -> dict[str, Any]:
    """Every table of the database: its columns (name, type, null) and constraints (columns, kinds, target)."""
    from django.db import connection

    out: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            columns = [
                (c.name, c.type_code, c.null_ok, getattr(c, "default", None))
                for c in connection.introspection.get_table_description(cursor, table)
            ]
            constraints = {
                name: tuple(
                    (key, tuple(value) if isinstance(value, list) else value) for key, value in sorted(info.items())
                )
                for name, info in connection.introspection.get_constraints(cursor, table).items()
            }
            out[table] = (sorted(columns, key=str), sorted(constraints.items(), key=str))
    return out


def step(name: str, executor_class: type, targets: list | None, figures: dict[str, float]) -> None:
    from django.db import connection

    executor = executor_class(connection)
    started = time.perf_counter()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    figures[name] = time.perf_counter() - started
    print(f"  {name:<34} {figures[name]:7.1f} s", flush=True)


def run() -> int:
    from django.db.migrations.executor import MigrationExecutor

    from tests.support import migrations

    migrations.check_django()
    figures: dict[str, float] = {}
    started = time.perf_counter()
    migrations.migrate()
    print(f"  {'create (executor, keeps states)':<34} {time.perf_counter() - started:7.1f} s", flush=True)
    full = schema()
    schemas: dict[str, Any] = {}

    step("executor kept: rollback", migrations.StatesExecutor, [TARGET], figures)
    schemas["executor kept"] = schema()
    step("executor kept: forward", migrations.StatesExecutor, None, figures)
    forward_ok = {"executor kept": schema() == full}

    migrations.STATES.clear()
    step("executor, nothing kept: rollback", migrations.StatesExecutor, [TARGET], figures)
    schemas["executor, nothing kept"] = schema()
    migrations.STATES.clear()
    step("executor, nothing kept: forward", migrations.StatesExecutor, None, figures)
    forward_ok["executor, nothing kept"] = schema() == full

    step("stock Django: rollback", MigrationExecutor, [TARGET], figures)
    stock = schema()
    step("stock Django: forward", MigrationExecutor, None, figures)
    forward_ok["stock Django"] = schema() == full

    print()
    stock_cycle = figures["stock Django: rollback"] + figures["stock Django: forward"]
    failed = False
    for name in ("executor kept", "executor, nothing kept"):
        cycle = figures[f"{name}: rollback"] + figures[f"{name}: forward"]
        same_back = schemas[name] == stock
        print(
            f"{name:<24} rollback + forward {cycle:6.1f} s = {cycle / stock_cycle:.3f} × stock ({stock_cycle:.1f} s); "
            f"schema after rollback {'=' if same_back else '≠'} stock's; after forward "
            f"{'=' if forward_ok[name] else '≠'} fully migrated"
        )
        failed |= not (same_back and forward_ok[name])
    if not forward_ok["stock Django"]:
        print("stock Django's forward run does not give the fully migrated schema either")
        failed = True
    return 1 if failed else 0


def main() -> None:
    arguments = parser(__doc__)
    arguments.add_argument("--sqlite", action="store_true", help="a scratch SQLite file instead of PostgreSQL")
    args = arguments.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ.setdefault("DOTENV_FILE", "")
    os.chdir(ROOT)
    if args.sqlite:
        with tempfile.TemporaryDirectory() as folder:
            os.environ["DATABASE_URL"] = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
            import django

            django.setup()
            print(f"SQLite, Django {django.get_version()}")
            sys.exit(run())
    with scratch_database(args.server, "hotcross_bench_migration_states", keep=args.keep):
        import django

        print(f"PostgreSQL, Django {django.get_version()}")
        code = run()
    sys.exit(code)


if __name__ == "__main__":
    main()
