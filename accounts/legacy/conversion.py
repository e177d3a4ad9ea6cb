"""The conversion itself: every pending customer becomes a developer, and each paying entity an organization.

Set-based: two `INSERT … SELECT` statements whatever the table size (never a query per row), so a million customers
convert in about a minute with the Python process's memory independent of the table size. The pending rows come from
`Legacy.pending()` (the ORM's SQL); on PostgreSQL they are normalised once into a temporary table that both INSERTs
read. All or nothing: validation first (`validation.find_problems`), and every statement in one transaction (a
savepoint inside the migration's).
"""

# Statements here are built from quoted table names read from the model registry and from constants of this module;
# values from the database or from people are only ever passed as parameters.
# ruff: noqa: S608

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import CharField, UUIDField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.db.models.sql import Query
from django.utils import timezone

from accounts.choices import STATUS_STANDING, PricingModel
from accounts.legacy.report import LegacyConversionError
from accounts.legacy.source import PENDING_COLUMNS, Legacy
from accounts.legacy.validation import find_problems

Progress = Callable[[str], None]

# Above this many customers, the interactive progress lines are worth printing.
PROGRESS_THRESHOLD = 10_000
# Below this many customers, maintaining the indexes row by row is cheap enough.
BULK_LOAD_THRESHOLD = 10_000
_PENDING_TABLE = "hotcross_legacy_pending"


@dataclass
class LegacyResult:
    organizations_created: int = 0
    developers_created: int = 0
    seconds: float = 0.0


def convert(connection: Any, apps: Any, *, progress: Progress | None = None) -> LegacyResult:
    """Convert every customer without a developer yet; `LegacyConversionError` (nothing written) on any problem."""
    started = time.monotonic()
    legacy = Legacy.from_apps(apps, connection)
    if not legacy.customers_table_exists():
        return LegacyResult()
    say = progress or (lambda _msg: None)
    with transaction.atomic(using=connection.alias):
        say("checking customers…")
        problems = find_problems(legacy)
        if problems:
            raise LegacyConversionError(problems)
        pending, params = _pending_relation(legacy)
        say(f"checked ({time.monotonic() - started:.1f} s); creating organizations…")
        with _bulk_load(legacy, say):
            organizations, developers = _insert(legacy, pending, params, say, started)
        if connection.vendor == "postgresql":
            _execute(connection, f"DROP TABLE {_PENDING_TABLE}")
    seconds = time.monotonic() - started
    say(f"{developers} developers created; legacy conversion done in {seconds:.1f} s.")
    return LegacyResult(organizations_created=organizations, developers_created=developers, seconds=seconds)


def _pending_relation(legacy: Legacy) -> tuple[str, list[Any]]:
    """What the INSERTs read the pending customers from (`PENDING_COLUMNS`), and its parameters.

    PostgreSQL: a temporary table (not WAL-logged) filled once, so each trimmed, lower-cased value is computed once
    rather than wherever it is used. Elsewhere: the query itself, as a subquery.
    """
    connection = legacy.connection
    sql, params = legacy.pending().values(*PENDING_COLUMNS).query.sql_with_params()
    if connection.vendor != "postgresql":
        return f"({sql})", list(params)
    # Room for the grouping and the anti-joins in memory; reverts when the migration's transaction ends.
    _execute(connection, "SET LOCAL work_mem = '64MB'")
    _execute(connection, f"CREATE TEMPORARY TABLE {_PENDING_TABLE} AS {sql}", params)
    _execute(connection, f"ANALYZE {_PENDING_TABLE}")
    return _PENDING_TABLE, []


def _insert(legacy: Legacy, pending: str, params: list[Any], say: Progress, started: float) -> tuple[int, int]:
    """The two set-based INSERTs: organizations (one per paying entity), then a developer per customer."""
    connection = legacy.connection
    organizations_table, developers_table = legacy.table(legacy.organization), legacy.table(legacy.developer)
    now = timezone.now()
    status_of_rank = "CASE g.rank " + " ".join(f"WHEN {i} THEN '{s}'" for i, s in enumerate(STATUS_STANDING)) + " END"
    representative = _compiled(connection, Cast(RawSQL("g.rep", [], output_field=CharField()), UUIDField()))
    columns = (
        "id, name, stripe_customer_id, billing_email, subscription_id, subscription_status, max_seats, "
        "pricing_model, legacy_customer_id, created_at, updated_at"
    )
    organizations = _execute(
        connection,
        f"""INSERT INTO {organizations_table} ({columns})
            SELECT p.customer_id, COALESCE(p.company_name, p.norm_email), NULL, p.norm_email, '', p.status, 1,
                   '{PricingModel.PER_DEVELOPER}', p.customer_id, COALESCE(p.created_at, %s), %s
            FROM {pending} p
            WHERE p.stripe_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM {organizations_table} o WHERE o.legacy_customer_id = p.customer_id)
            UNION ALL
            SELECT {representative}, COALESCE(g.company, g.email), g.stripe_id,
                   CASE WHEN g.n = 1 THEN g.email ELSE '' END, '', {status_of_rank}, g.n,
                   CASE WHEN g.n = 1 THEN '{PricingModel.PER_DEVELOPER}' ELSE '{PricingModel.PER_ORGANIZATION}' END,
                   {representative}, COALESCE(g.created_at, %s), %s
            FROM (
                SELECT p.stripe_id, min(p.id_text) AS rep, count(*) AS n, min(p.company_name) AS company,
                       min(p.norm_email) AS email, min(p.status_rank) AS rank, min(p.created_at) AS created_at
                FROM {pending} p WHERE p.stripe_id IS NOT NULL GROUP BY p.stripe_id
            ) g""",
        [now, now, *params, now, now, *params],
    )
    say(f"{organizations} organizations created ({time.monotonic() - started:.1f} s); creating developers…")
    developers = _execute(
        connection,
        f"""INSERT INTO {developers_table} (
                id, organization_id, email, first_name, last_name, api_key_hash, api_key_prefix,
                api_key_created_at, api_key_revoked_at, api_key_last_used_at, api_key_expires_at, is_active,
                seat_claimed_at, legacy_customer_id, created_at, updated_at)
            SELECT p.customer_id, COALESCE(o.id, p.customer_id), p.norm_email, COALESCE(p.first_name, ''),
                   COALESCE(p.last_name, ''), p.api_key_hash, COALESCE(p.api_key_prefix, ''),
                   p.api_key_created_at, p.api_key_revoked_at, p.api_key_last_used_at, NULL, %s,
                   COALESCE(p.api_key_created_at, p.created_at, %s), p.customer_id, COALESCE(p.created_at, %s), %s
            FROM {pending} p
            LEFT JOIN {organizations_table} o ON o.stripe_customer_id = p.stripe_id""",
        [True, now, now, now, *params],
    )
    return organizations, developers


@contextmanager
def _bulk_load(legacy: Legacy, say: Progress) -> Iterator[None]:
    """PostgreSQL, many customers, (nearly) empty target tables: load first, index afterwards.

    Maintaining the indexes, unique checks and a deferred foreign-key check row by row costs PostgreSQL more than
    building them once over the loaded rows (what `pg_restore` does too). So the secondary indexes, unique
    constraints and foreign keys *of the two target tables* are dropped before the INSERTs and recreated from their
    own definitions after them (the primary keys, which other tables reference, stay). Everything happens in the
    migration's transaction: if a recreated constraint failed, the whole conversion would roll back, drops included.
    The validation before has already made sure that none will.
    """
    connection = legacy.connection
    targets = [legacy.organization._meta.db_table, legacy.developer._meta.db_table]
    customers = legacy.customers().count()
    existing = legacy.developer._default_manager.count()
    if connection.vendor != "postgresql" or customers < BULK_LOAD_THRESHOLD or existing >= customers:
        yield
        return
    oids = "ARRAY[" + ", ".join("CAST(%s AS regclass)" for _ in targets) + "]"
    # Foreign keys and unique constraints declared on the targets (not those other tables declare on them), except
    # a unique constraint some foreign key relies on.
    constraints = _rows(
        connection,
        f"""SELECT c.contype, CAST(c.conrelid AS regclass)::text, c.conname, pg_get_constraintdef(c.oid)
            FROM pg_constraint c
            WHERE c.conrelid = ANY({oids}) AND c.contype IN ('f', 'u')
              AND NOT (c.contype = 'u' AND EXISTS (
                  SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid))
            ORDER BY c.contype, c.conname""",
        targets,
    )
    indexes = _rows(
        connection,
        f"""SELECT CAST(i.indexrelid AS regclass)::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index i
            WHERE i.indrelid = ANY({oids}) AND NOT i.indisprimary
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            ORDER BY 1""",
        targets,
    )
    quote = connection.ops.quote_name
    for _kind, table, name, _definition in constraints:  # foreign keys first ('f' < 'u')
        _execute(connection, f"ALTER TABLE {table} DROP CONSTRAINT {quote(name)}")
    for name, _definition in indexes:
        _execute(connection, f"DROP INDEX {name}")
    yield
    started = time.monotonic()
    say(f"indexing {len(indexes) + len(constraints)} indexes and constraints…")
    _execute(connection, "SET LOCAL maintenance_work_mem = '256MB'")
    for _name, definition in indexes:
        _execute(connection, definition)
    for _kind, table, name, definition in reversed(constraints):  # unique constraints, then the foreign keys
        _execute(connection, f"ALTER TABLE {table} ADD CONSTRAINT {quote(name)} {definition}")
    say(f"indexed ({time.monotonic() - started:.1f} s)")


def _compiled(connection: Any, expression: Any) -> str:
    """The SQL of a parameterless Django expression on this connection (Django's own `Cast` and friends, so there is
    no dialect to keep here)."""
    query = Query(None)
    sql, params = query.get_compiler(connection=connection).compile(expression.resolve_expression(query))
    assert not params, "only parameterless expressions can be inlined"
    return sql


def _rows(connection: Any, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def _execute(connection: Any, sql: str, params: Iterable[Any] = ()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.rowcount
