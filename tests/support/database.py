"""The run's test database: which tests use it, how a subprocess is pointed at it, how it is named and tuned.

**What runs twice.** CI runs the suite on PostgreSQL and again on SQLite. A test that touches the run's database
(through the ORM, SQL, migrations, or a server or command it starts on that database) runs on both; a test that never
does runs once (`make test PYTEST_ARGS=--database-tests-only` leaves it out: the SQLite run in `.ci/run`). Which is
which is read from the test's fixtures (`uses_database`): in-process, pytest-django refuses database access to a test
without them, and `database_url()` refuses to give a subprocess the database of one, so a test that starts touching
the database without saying so fails instead of silently running once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).resolve().parents[2]

# Fixtures that give a test the run's database (pytest-django's, and `django_db_setup`, which servers on the test
# database need).
DATABASE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
        "django_db_setup",
    }
)

# The test running now (tests/conftest.py keeps it), for `database_url`'s check.
current_item: pytest.Item | None = None


def uses_database(item: pytest.Item) -> bool:
    """Whether `item` touches the run's database: it has pytest-django's `django_db` mark, or needs one of
    `DATABASE_FIXTURES` (directly or through other fixtures)."""
    if item.get_closest_marker("django_db") is not None:
        return True
    return bool(DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ())))


def database_url(*, host: str | None = None, port: int | None = None) -> str:
    """DATABASE_URL of the test database this session created (optionally through another host/port), for a server
    or command a test starts. Only for tests that use the database (see the module)."""
    from django.db import connection

    if current_item is not None and not uses_database(current_item):
        raise RuntimeError(
            f"{current_item.nodeid} gives a subprocess the test database but does not use it: add the `db` or "
            "`transactional_db` fixture (or pytest.mark.django_db), or it would run on one database only."
        )
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = quote(s.get("USER") or "")
    password = f":{quote(s['PASSWORD'])}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host or s['HOST']}:{port or s['PORT']}/{s['NAME']}"


def checkout_tag() -> str:
    """Eight hex digits naming this checkout: part of the test databases' names, so that suites run from two
    checkouts at once (on the same DATABASE_URL) never share or drop each other's database."""
    return hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]


def test_database_name(name: str) -> str:
    """The test database's name for a configured PostgreSQL database `name` (pytest-xdist adds `_gw0`, `_gw1`…)."""
    return f"test_{name}_{checkout_tag()}"


def tune_postgresql(connection) -> None:
    """No waiting for the WAL on commit in the test database (this and later connections, servers included): nothing
    tests what a crash keeps."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER DATABASE {connection.ops.quote_name(connection.settings_dict['NAME'])} SET synchronous_commit = off"
        )
        cursor.execute("SET synchronous_commit = off")


# What Django's post_migrate puts back after every flush, the same rows each time: kept, so their ids stay what the
# servers a session shares have cached (a content type id in the admin history written by a server process; Django's
# own flush renumbers them after every transactional test, and the next history row a server writes breaks its
# foreign key).
KEPT_BY_FLUSH = frozenset({"django_content_type", "auth_permission"})


def _sql_flush_of_tables_with_rows(style, connection, reset_sequences=True, allow_cascade=False):
    """`django.core.management.sql.sql_flush`, but on PostgreSQL a DELETE of each table that has a row, instead of one
    TRUNCATE of every table: the same empty database at the end, in ~0.1 s instead of 1–4 s after each transactional
    test (TRUNCATE renews the files of each of the ~95 tables and their indexes). One transaction, and every foreign
    key of the schema is deferrable with no ON DELETE action, so the order does not matter (checked by
    tests/test_support.py). Content types and permissions are kept (`KEPT_BY_FLUSH`), on SQLite too (its DELETE of
    each table, without those two). With `reset_sequences`, Django's own."""
    from django.core.management.sql import sql_flush

    if reset_sequences:
        return sql_flush(style, connection, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
    if connection.vendor != "postgresql":  # Django's DELETE of each table, but of the kept ones
        kept = {connection.ops.quote_name(table) for table in KEPT_BY_FLUSH}
        statements = sql_flush(style, connection, reset_sequences=False, allow_cascade=allow_cascade)
        filtered = [sql for sql in statements if not any(name in sql for name in kept)]
        return filtered if filtered or not statements else ["SELECT 1;"]  # non-empty: post_migrate still runs
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    if not tables:
        return []
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            " UNION ALL ".join(f"SELECT %s WHERE EXISTS (SELECT 1 FROM {quote(table)})" for table in tables),  # noqa: S608 - Django's table names
            tables,
        )
        with_rows = [row[0] for row in cursor.fetchall() if row[0] not in KEPT_BY_FLUSH]
    # A server a test started (the gateway's usage flush, a key-check's last-used write) may still insert a row that
    # points at a row deleted here, between the look above and the commit: the deferred foreign keys are checked at
    # once inside the block, and on a violation (or a deadlock with such a writer: PostgreSQL cancels this side) the
    # block falls back to a TRUNCATE of every table but the kept ones (it takes the locks that make such a late insert
    # wait and then fail, as after a stock flush). The TRUNCATE may itself meet such a writer half-way through its
    # locks (CI saw a deadlock there too): it is tried again, after 50 ms, up to 20 times (the writer has committed by
    # then), and a last time without the handler, so a flush that cannot be made still fails the test. One statement,
    # so Django's flush still sees a non-empty list and runs post_migrate (content types, permissions, this process's
    # cache).
    deletes = " ".join(f"DELETE FROM {quote(table)};" for table in with_rows)  # noqa: S608 - Django's table names
    truncate = f"TRUNCATE {', '.join(quote(table) for table in tables if table not in KEPT_BY_FLUSH)};"
    retried = (
        f"FOR attempt IN 1..20 LOOP BEGIN {truncate} RETURN; "
        "EXCEPTION WHEN deadlock_detected THEN PERFORM pg_sleep(0.05); END; END LOOP; "
    )
    return [
        f"DO $flush$ BEGIN {deletes} SET CONSTRAINTS ALL IMMEDIATE; "
        f"EXCEPTION WHEN foreign_key_violation OR deadlock_detected THEN {retried}{truncate} END $flush$;"
    ]


def use_fast_flush() -> None:
    """Make `manage.py flush` (what pytest-django runs after every transactional test) delete the rows of the tables
    that have some, on PostgreSQL, in this process."""
    from django.core.management.commands import flush

    flush.sql_flush = _sql_flush_of_tables_with_rows
