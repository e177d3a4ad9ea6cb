"""Conversion of the legacy `customers` table into organizations and developers.

Used by the migration `0002_legacy_conversion` (forward and reverse) and by `manage.py orgs legacy-report`. Everything
here is plain SQL over one database connection: the migration must not import today's models, and a million customers
must convert in a few set-based statements (never a query per row) with the Python process's memory independent of
the table size.

The rules (README, "Migrating from the customer-based model"):

- One developer per customer, whose id is the customer's id: email trimmed and lower-cased, names copied (NULL →
  empty), every `api_key_*` column copied verbatim (the hash is the SHA-256 hex of the whole key, as `accounts.keys`
  computes it, so old keys keep working; revoked keys stay revoked). `seat_claimed_at` is when the key was created,
  else when the customer was created, else now.
- One organization per paying entity. Customers sharing a Stripe customer id (trimmed) become the developers of one
  organization (per-organization pricing, `max_seats` = their number, the best status of theirs); every other customer
  gets a one-seat, per-developer organization whose id is the customer's id. NULL or blank Stripe ids never merge.
  Name: the company, trimmed; blank → the email (merged: the alphabetically first company, else the first email).
  Status: trimmed and lower-cased; NULL or blank → `incomplete` (keys refused until Stripe reports a paid status).
- Each created row keeps `legacy_customer_id`, so a second run converts only customers without a developer yet, and
  the reverse deletes exactly the converted rows. `customers` is only ever read.
- Validation runs first, in SQL, and any finding stops the conversion before anything is written.
"""

# Every statement here is built from quoted table names read from the model registry and from constants of this
# module; values from the database or from people are only ever passed as parameters.
# ruff: noqa: S608

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from accounts.exceptions import AccountsError
from accounts.models import STATUS_STANDING, PricingModel, SubscriptionStatus

# Above this many customers, the interactive progress lines are worth printing.
PROGRESS_THRESHOLD = 10_000

# Column limits of the target tables (checked in SQL so a long value is reported, not a database error mid-insert).
_LIMITS = {
    "email": 254,
    "first_name": 150,
    "last_name": 150,
    "api_key_prefix": 32,
    "stripe_customer_id": 255,
    "organization name": 200,
}

Progress = Callable[[str], None]


# --- findings ------------------------------------------------------------------------------------------------------


def _uuid_text(value: Any) -> str:
    """A customer id as people read it (SQLite hands back 32 hex digits)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


@dataclass(frozen=True, slots=True)
class Problem:
    """One customer row that stops the conversion, and why."""

    customer_id: str
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"customer_id": self.customer_id, "code": self.code, "detail": self.detail}


# What each finding means and how to fix it, in the order the report lists them.
FIXES: dict[str, tuple[str, str]] = {
    "duplicate_email": (
        "Customers whose emails are equal ignoring case and surrounding spaces (developer emails are unique).",
        "Give each of them a distinct email, or delete the rows that are duplicates: "
        "UPDATE customers SET email = '…' WHERE id = '…';",
    ),
    "email_taken": (
        "The email already belongs to an existing developer (made by hand, or converted from another customer).",
        "Change the customer's email, or remove that developer (manage.py orgs list-devs shows them).",
    ),
    "missing_email": (
        "The email is empty.",
        "Set the customer's email: UPDATE customers SET email = '…' WHERE id = '…';",
    ),
    "invalid_email": (
        "The email has no @.",
        "Correct the customer's email: UPDATE customers SET email = '…' WHERE id = '…';",
    ),
    "invalid_status": (
        "The subscription status is not one of Stripe's after trimming and lower-casing "
        f"({', '.join(SubscriptionStatus.values)}).",
        "Set it to one of those, or to NULL (converted as incomplete): "
        "UPDATE customers SET subscription_status = 'canceled' WHERE id = '…';",
    ),
    "duplicate_key": (
        "Customers with the same api_key_hash (a key can belong to one developer only).",
        "Keep the key on one of them and set api_key_hash and api_key_prefix to NULL on the others; "
        "after the migration give those developers a new key with manage.py orgs rotate-key.",
    ),
    "key_taken": (
        "The api_key_hash already belongs to an existing developer.",
        "Set the customer's api_key_hash and api_key_prefix to NULL (issue a new key after the migration), "
        "or remove that developer.",
    ),
    "invalid_key_hash": (
        "The api_key_hash is not a SHA-256 hex digest (64 characters 0-9 a-f), so no key can match it.",
        "Correct it, or set api_key_hash and api_key_prefix to NULL and issue a new key after the migration "
        "(manage.py orgs rotate-key).",
    ),
    "stripe_customer_taken": (
        "An organization with this Stripe customer id already exists.",
        "If it was created by hand, clear the Stripe id of one of the two. If it was converted earlier (its customers "
        "were added since), roll back with manage.py migrate accounts 0001_initial and migrate again, so all the "
        "customers of this Stripe customer are converted together.",
    ),
    "too_long": (
        "A value is longer than its column allows.",
        "Shorten it in customers (the detail names the column and the limit).",
    ),
}


class LegacyConversionError(AccountsError):
    """Rows of `customers` that cannot be converted; nothing was written."""

    code = "legacy_conversion_refused"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(describe_problems(problems, written=False))


class LegacyReverseError(AccountsError):
    """Rows created after the conversion still point at converted ones; nothing was deleted."""

    code = "legacy_reverse_refused"


def describe_problems(problems: list[Problem], *, written: bool | None = None) -> str:
    """Every problem, grouped by kind, each kind with its fix (the migration's error and the report's text)."""
    customers = len({p.customer_id for p in problems})
    head = f"{customers} customer{'s' if customers != 1 else ''} cannot be converted"
    if written is False:
        head = f"The legacy conversion stopped before writing anything: {head}."
    else:
        head = f"{head} (the migration would stop before writing anything)."
    lines = [
        head,
        "Fix these rows of the customers table, check with `manage.py orgs legacy-report`, then run "
        "`manage.py migrate` again.",
    ]
    by_code: dict[str, list[Problem]] = defaultdict(list)
    for problem in problems:
        by_code[problem.code].append(problem)
    for code in [*FIXES, *sorted(set(by_code) - set(FIXES))]:
        if code not in by_code:
            continue
        what, fix = FIXES.get(code, ("", ""))
        lines += ["", f"{code}: {what}", f"  Fix: {fix}"]
        lines += [f"  - customer {p.customer_id}: {p.detail}" for p in by_code[code]]
    return "\n".join(lines)


# --- results -------------------------------------------------------------------------------------------------------


@dataclass
class Merge:
    stripe_customer_id: str
    customer_ids: list[str]
    subscription_status: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "stripe_customer_id": self.stripe_customer_id,
            "customers": len(self.customer_ids),
            "customer_ids": self.customer_ids,
            "subscription_status": self.subscription_status,
        }


@dataclass
class LegacyPlan:
    """What the conversion would do now (read-only)."""

    table_exists: bool
    customers: int = 0
    already_converted: int = 0
    organizations_to_create: int = 0
    developers_to_create: int = 0
    merges: list[Merge] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table_exists": self.table_exists,
            "customers": self.customers,
            "already_converted": self.already_converted,
            "organizations_to_create": self.organizations_to_create,
            "developers_to_create": self.developers_to_create,
            "merges": [m.as_dict() for m in self.merges],
            "problems": [p.as_dict() for p in self.problems],
            "blocking_customers": len({p.customer_id for p in self.problems}),
        }

    def describe(self) -> str:
        if not self.table_exists:
            return "No legacy customers table: the migration has nothing to convert."
        lines = [
            f"Customers found:               {self.customers}",
            f"Already converted:             {self.already_converted}",
            f"Organizations to create:       {self.organizations_to_create}",
            f"Developers to create:          {self.developers_to_create}",
            f"Merges (shared Stripe id):     {len(self.merges)}",
        ]
        for merge in self.merges:
            lines.append(
                f"  - {merge.stripe_customer_id}: {len(merge.customer_ids)} customers → one organization "
                f"({merge.subscription_status}, {len(merge.customer_ids)} seats): {', '.join(merge.customer_ids)}"
            )
        lines.append("")
        lines.append(describe_problems(self.problems) if self.problems else "No problems: the migration can run.")
        return "\n".join(lines)


@dataclass
class LegacyResult:
    organizations_created: int = 0
    developers_created: int = 0
    seconds: float = 0.0


@dataclass
class ReverseResult:
    organizations_deleted: int = 0
    developers_deleted: int = 0
    related_rows: dict[str, int] = field(default_factory=dict)


# --- tables and SQL dialect ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    """Quoted table names, read from whichever model registry the caller has (historical in a migration)."""

    customers: str
    organizations: str
    developers: str
    customers_raw: str
    organization_model: Any = None
    developer_model: Any = None
    # False before Hotcross's own tables exist (`orgs legacy-report` on the old database, before any migrate):
    # then nothing has been converted yet and nothing can collide.
    targets_exist: bool = True

    @classmethod
    def from_apps(cls, apps: Any, connection: Any) -> Tables:
        org = apps.get_model("accounts", "Organization")
        dev = apps.get_model("accounts", "Developer")
        customers = apps.get_model("accounts", "LegacyCustomer")._meta.db_table
        q = connection.ops.quote_name
        with connection.cursor() as cursor:
            existing = set(connection.introspection.table_names(cursor))
        return cls(
            customers=q(customers),
            organizations=q(org._meta.db_table),
            developers=q(dev._meta.db_table),
            customers_raw=customers,
            organization_model=org,
            developer_model=dev,
            targets_exist={org._meta.db_table, dev._meta.db_table} <= existing,
        )


class _Dialect:
    """The few expressions PostgreSQL and SQLite spell differently."""

    def __init__(self, connection: Any) -> None:
        self.pg = connection.vendor == "postgresql"

    def trim(self, expr: str) -> str:
        # Spaces, tabs and line ends: what a pasted value carries.
        return f"btrim({expr}, E' \\t\\r\\n')" if self.pg else f"trim({expr}, ' ' || char(9, 10, 13))"

    def customer_id(self, expr: str) -> str:
        # Django stores UUIDs as 32 hex digits on SQLite; accept a legacy table that kept the dashes.
        return expr if self.pg else f"lower(replace({expr}, '-', ''))"

    def id_text(self, expr: str) -> str:
        return f"CAST({expr} AS text)" if self.pg else expr

    def text_id(self, expr: str) -> str:
        return f"CAST({expr} AS uuid)" if self.pg else expr

    def has_at(self, expr: str) -> str:
        return f"strpos({expr}, '@') > 0" if self.pg else f"instr({expr}, '@') > 0"

    def not_sha256_hex(self, expr: str) -> str:
        if self.pg:
            # Not '^[0-9a-f]{64}$': PostgreSQL's regex engine takes ~15 times longer over a million rows.
            return f"(char_length({expr}) <> 64 OR {expr} ~ '[^0-9a-f]')"
        return f"(length({expr}) <> 64 OR {expr} GLOB '*[^0-9a-f]*')"

    def length(self, expr: str) -> str:
        return f"char_length({expr})" if self.pg else f"length({expr})"


def _status_rank_sql(expr: str) -> str:
    whens = " ".join(f"WHEN '{status}' THEN {rank}" for rank, status in enumerate(STATUS_STANDING))
    return f"CASE {expr} {whens} END"


def _rank_status_sql(expr: str) -> str:
    whens = " ".join(f"WHEN {rank} THEN '{status}'" for rank, status in enumerate(STATUS_STANDING))
    return f"CASE {expr} {whens} END"


def _pending_sql(t: Tables, d: _Dialect) -> str:
    """Customers without a developer yet, with their values normalised as the rules say."""
    cid = d.customer_id("c.id")
    not_converted = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {t.developers} x WHERE x.legacy_customer_id = {cid})"
        if t.targets_exist
        else ""
    )
    return f"""(
        SELECT {cid} AS id,
               lower({d.trim("COALESCE(c.email, '')")}) AS email,
               NULLIF({d.trim("c.stripe_customer_id")}, '') AS stripe_id,
               NULLIF({d.trim("c.company")}, '') AS company,
               COALESCE(NULLIF(lower({d.trim("c.subscription_status")}), ''), '{SubscriptionStatus.INCOMPLETE}')
                   AS status,
               c.subscription_status AS raw_status,
               c.first_name, c.last_name, c.api_key_hash, c.api_key_prefix, c.api_key_created_at,
               c.api_key_revoked_at, c.api_key_last_used_at, c.created_at
        FROM {t.customers} c
        {not_converted}
    )"""


def table_exists(connection: Any, table: str = "customers") -> bool:
    with connection.cursor() as cursor:
        return table in connection.introspection.table_names(cursor)


def count_customers(connection: Any, tables: Tables) -> int:
    return _rows(connection, f"SELECT count(*) FROM {tables.customers}")[0][0]


def _rows(connection: Any, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def _execute(connection: Any, sql: str, params: Iterable[Any] = ()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.rowcount


# --- validation ----------------------------------------------------------------------------------------------------


def find_problems(connection: Any, tables: Tables, pending: str | None = None) -> list[Problem]:
    """Every pending customer that would stop the conversion (a handful of set-based queries, no writes).

    `pending`: where to read the pending customers from (default: `_pending_sql`; the conversion passes the
    temporary table it normalised them into).
    """
    d = _Dialect(connection)
    pending = pending or _pending_sql(tables, d)
    problems: list[Problem] = []

    # Row by row faults, in one scan.
    statuses = ", ".join(f"'{s}'" for s in SubscriptionStatus.values)
    name = "COALESCE(p.company, p.email)"
    checks = {
        "missing_email": "p.email = ''",
        "invalid_email": f"p.email <> '' AND NOT ({d.has_at('p.email')})",
        "invalid_status": f"p.status NOT IN ({statuses})",
        "invalid_key_hash": f"p.api_key_hash IS NOT NULL AND {d.not_sha256_hex('p.api_key_hash')}",
        "too_long:email": f"{d.length('p.email')} > {_LIMITS['email']}",
        "too_long:first_name": f"{d.length('p.first_name')} > {_LIMITS['first_name']}",
        "too_long:last_name": f"{d.length('p.last_name')} > {_LIMITS['last_name']}",
        "too_long:api_key_prefix": f"{d.length('p.api_key_prefix')} > {_LIMITS['api_key_prefix']}",
        "too_long:stripe_customer_id": f"{d.length('p.stripe_id')} > {_LIMITS['stripe_customer_id']}",
        "too_long:organization name": f"{d.length(name)} > {_LIMITS['organization name']}",
    }
    flags = ", ".join(f"CASE WHEN {cond} THEN 1 ELSE 0 END" for cond in checks.values())
    where = " OR ".join(f"({cond})" for cond in checks.values())
    rows = _rows(
        connection,
        f"SELECT p.id, p.email, p.raw_status, {flags} FROM {pending} p WHERE {where} ORDER BY p.email, p.id",
    )
    for customer_id, email, raw_status, *hits in rows:
        for key, hit in zip(checks, hits, strict=True):
            if not hit:
                continue
            code, _, column = key.partition(":")
            if code == "invalid_status":
                detail = f"subscription_status {raw_status!r}"
            elif code == "too_long":
                limit = _LIMITS[column]
                detail = (
                    "the organization name (company, or the email when it has none) "
                    if column == "organization name"
                    else f"{column} "
                ) + f"is longer than {limit} characters"
            elif code == "invalid_key_hash":
                detail = "api_key_hash is not 64 lower-case hex digits"
            else:
                detail = f"email {email!r}"
            problems.append(Problem(_uuid_text(customer_id), code, detail))

    # Two pending customers that would collide on a unique column of developers.
    for code, column in (("duplicate_email", "email"), ("duplicate_key", "api_key_hash")):
        rows = _rows(
            connection,
            f"""SELECT p.{column}, p.id FROM {pending} p
                WHERE p.{column} IN (
                    SELECT q.{column} FROM {pending} q
                    WHERE q.{column} IS NOT NULL AND q.{column} <> ''
                    GROUP BY q.{column} HAVING count(*) > 1)
                ORDER BY p.{column}, p.id""",
        )
        groups: dict[str, list[str]] = defaultdict(list)
        for value, customer_id in rows:
            groups[value].append(_uuid_text(customer_id))
        for value, ids in groups.items():
            for customer_id in ids:
                others = ", ".join(i for i in ids if i != customer_id)
                what = f"email {value!r}" if column == "email" else "the same api_key_hash"
                problems.append(Problem(customer_id, code, f"{what} as customer {others}"))

    # Collisions with rows created outside the conversion (or by an earlier one); none while the tables are empty.
    collisions = []
    if tables.targets_exist and _rows(connection, f"SELECT EXISTS (SELECT 1 FROM {tables.developers})")[0][0]:
        collisions += [
            f"""SELECT p.id, 'email_taken', d.id, d.email FROM {pending} p
                JOIN {tables.developers} d ON lower(d.email) = p.email""",
            f"""SELECT p.id, 'key_taken', d.id, d.email FROM {pending} p
                JOIN {tables.developers} d ON d.api_key_hash = p.api_key_hash""",
        ]
    if tables.targets_exist and _rows(connection, f"SELECT EXISTS (SELECT 1 FROM {tables.organizations})")[0][0]:
        collisions.append(
            f"""SELECT p.id, 'stripe_customer_taken', o.id, o.name FROM {pending} p
                JOIN {tables.organizations} o ON o.stripe_customer_id = p.stripe_id"""
        )
    rows = _rows(connection, " UNION ALL ".join(collisions)) if collisions else []
    for customer_id, code, other_id, other_name in rows:
        if code == "stripe_customer_taken":
            detail = f"organization {other_name!r} ({_uuid_text(other_id)}) already has this Stripe customer id"
        else:
            detail = f"developer {other_name} ({_uuid_text(other_id)}) already has this " + (
                "email" if code == "email_taken" else "key"
            )
        problems.append(Problem(_uuid_text(customer_id), code, detail))

    order = list(FIXES)
    problems.sort(key=lambda p: (order.index(p.code) if p.code in order else len(order), p.customer_id))
    return problems


# --- plan (legacy-report) -------------------------------------------------------------------------------------------


def plan(connection: Any, apps: Any) -> LegacyPlan:
    """What the conversion would create and what would stop it. Read-only."""
    tables = Tables.from_apps(apps, connection)
    if not table_exists(connection, tables.customers_raw):
        return LegacyPlan(table_exists=False)
    d = _Dialect(connection)
    pending = _pending_sql(tables, d)
    customers = count_customers(connection, tables)
    developers, singles, groups = _rows(
        connection,
        f"""SELECT count(*), COALESCE(sum(CASE WHEN p.stripe_id IS NULL THEN 1 ELSE 0 END), 0),
                   count(DISTINCT p.stripe_id)
            FROM {pending} p""",
    )[0]
    merges = [
        Merge(stripe_id, sorted(_uuid_text(i) for i in ids.split(",")), status)
        for stripe_id, ids, status in _rows(
            connection,
            f"""SELECT p.stripe_id, {_group_ids_sql(d)},
                       {_rank_status_sql(f"min({_status_rank_sql('p.status')})")}
                FROM {pending} p WHERE p.stripe_id IS NOT NULL
                GROUP BY p.stripe_id HAVING count(*) > 1 ORDER BY p.stripe_id""",
        )
    ]
    return LegacyPlan(
        table_exists=True,
        customers=customers,
        already_converted=customers - developers,
        organizations_to_create=singles + groups,
        developers_to_create=developers,
        merges=merges,
        problems=find_problems(connection, tables),
    )


def _group_ids_sql(d: _Dialect) -> str:
    if d.pg:
        return "string_agg(CAST(p.id AS text), ',' ORDER BY CAST(p.id AS text))"
    return "group_concat(p.id, ',')"


# --- forward --------------------------------------------------------------------------------------------------------


def convert(connection: Any, apps: Any, *, progress: Progress | None = None) -> LegacyResult:
    """Convert every customer without a developer yet; raise `LegacyConversionError` (writing nothing) on any problem.

    The statements succeed or fail together (a savepoint inside the migration's transaction).
    """
    started = time.monotonic()
    tables = Tables.from_apps(apps, connection)
    if not table_exists(connection, tables.customers_raw):
        return LegacyResult()
    say = progress or (lambda _msg: None)
    d = _Dialect(connection)
    pending = _pending_sql(tables, d)
    # All or nothing even when called outside a transaction (in the migration it is a savepoint).
    with transaction.atomic(using=connection.alias):
        if d.pg:
            # Room for the grouping and the anti-joins in memory; reverts when the migration's transaction ends.
            _execute(connection, "SET LOCAL work_mem = '64MB'")
            # Normalise the pending customers once: every check and INSERT below reads them, and PostgreSQL would
            # otherwise recompute each trimmed, lower-cased value wherever it is used. Not WAL-logged.
            _execute(connection, f"CREATE TEMPORARY TABLE {_PENDING_TABLE} AS SELECT * FROM {pending} p")
            _execute(connection, f"ANALYZE {_PENDING_TABLE}")
            pending = _PENDING_TABLE

        say("checking customers…")
        problems = find_problems(connection, tables, pending)
        if problems:
            raise LegacyConversionError(problems)  # the rollback takes the temporary table too
        say(f"checked ({time.monotonic() - started:.1f} s); creating organizations…")
        with _bulk_load(connection, tables, say):
            organizations, developers = _insert(connection, tables, pending, d, say, started)
        if d.pg:
            _execute(connection, f"DROP TABLE {_PENDING_TABLE}")
    seconds = time.monotonic() - started
    say(f"{developers} developers created; legacy conversion done in {seconds:.1f} s.")
    return LegacyResult(organizations_created=organizations, developers_created=developers, seconds=seconds)


def _insert(
    connection: Any, tables: Tables, pending: str, d: _Dialect, say: Progress, started: float
) -> tuple[int, int]:
    """The two set-based INSERTs: organizations (one per paying entity), then a developer per customer."""
    now = timezone.now()
    rank = _status_rank_sql("p.status")
    columns = (
        "id, name, stripe_customer_id, billing_email, subscription_id, subscription_status, max_seats, "
        "pricing_model, legacy_customer_id, created_at, updated_at"
    )
    organizations = _execute(
        connection,
        f"""INSERT INTO {tables.organizations} ({columns})
            SELECT p.id, COALESCE(p.company, p.email), NULL, p.email, '', p.status, 1,
                   '{PricingModel.PER_DEVELOPER}', p.id, COALESCE(p.created_at, %s), %s
            FROM {pending} p
            WHERE p.stripe_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM {tables.organizations} o WHERE o.legacy_customer_id = p.id)
            UNION ALL
            SELECT g.rep, COALESCE(g.company, g.email), g.stripe_id, CASE WHEN g.n = 1 THEN g.email ELSE '' END, '',
                   {_rank_status_sql("g.rank")}, g.n,
                   CASE WHEN g.n = 1 THEN '{PricingModel.PER_DEVELOPER}' ELSE '{PricingModel.PER_ORGANIZATION}' END,
                   g.rep, COALESCE(g.created_at, %s), %s
            FROM (
                SELECT p.stripe_id, {d.text_id(f"min({d.id_text('p.id')})")} AS rep, count(*) AS n,
                       min(p.company) AS company, min(p.email) AS email, min({rank}) AS rank,
                       min(p.created_at) AS created_at
                FROM {pending} p WHERE p.stripe_id IS NOT NULL GROUP BY p.stripe_id
            ) g""",
        [now, now, now, now],
    )
    say(f"{organizations} organizations created ({time.monotonic() - started:.1f} s); creating developers…")

    developers = _execute(
        connection,
        f"""INSERT INTO {tables.developers} (
                id, organization_id, email, first_name, last_name, api_key_hash, api_key_prefix,
                api_key_created_at, api_key_revoked_at, api_key_last_used_at, api_key_expires_at, is_active,
                seat_claimed_at, legacy_customer_id, created_at, updated_at)
            SELECT p.id, COALESCE(o.id, p.id), p.email, COALESCE(p.first_name, ''), COALESCE(p.last_name, ''),
                   p.api_key_hash, COALESCE(p.api_key_prefix, ''),
                   p.api_key_created_at, p.api_key_revoked_at, p.api_key_last_used_at, NULL, %s,
                   COALESCE(p.api_key_created_at, p.created_at, %s), p.id, COALESCE(p.created_at, %s), %s
            FROM {pending} p
            LEFT JOIN {tables.organizations} o ON o.stripe_customer_id = p.stripe_id""",
        [True, now, now, now],
    )
    return organizations, developers


_PENDING_TABLE = "hotcross_legacy_pending"

# Below this many customers, maintaining the indexes row by row is cheap enough.
BULK_LOAD_THRESHOLD = 10_000


@contextmanager
def _bulk_load(connection: Any, tables: Tables, say: Progress) -> Iterator[None]:
    """PostgreSQL, many customers, (nearly) empty target tables: load first, index afterwards.

    Maintaining eight indexes, unique checks and a deferred foreign-key check row by row costs PostgreSQL more than
    building them once over the loaded rows (what `pg_restore` does too). So the secondary indexes, unique
    constraints and foreign keys *of the two target tables* are dropped before the INSERTs and recreated from their
    own definitions after them (the primary keys, which other tables reference, stay). Everything happens in the
    migration's transaction: if a recreated constraint failed, the whole conversion would roll back, drops included.
    The validation before has already made sure that none will.
    """
    targets = [tables.organization_model._meta.db_table, tables.developer_model._meta.db_table]
    customers = count_customers(connection, tables)
    existing = _rows(connection, f"SELECT count(*) FROM {tables.developers}")[0][0]
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
    q = connection.ops.quote_name
    for _kind, table, name, _definition in constraints:  # foreign keys first ('f' < 'u')
        _execute(connection, f"ALTER TABLE {table} DROP CONSTRAINT {q(name)}")
    for name, _definition in indexes:
        _execute(connection, f"DROP INDEX {name}")
    yield
    started = time.monotonic()
    say(f"indexing {len(indexes) + len(constraints)} indexes and constraints…")
    _execute(connection, "SET LOCAL maintenance_work_mem = '256MB'")
    for _name, definition in indexes:
        _execute(connection, definition)
    for _kind, table, name, definition in reversed(constraints):  # unique constraints, then the foreign keys
        _execute(connection, f"ALTER TABLE {table} ADD CONSTRAINT {q(name)} {definition}")
    say(f"indexed ({time.monotonic() - started:.1f} s)")


# --- reverse --------------------------------------------------------------------------------------------------------


def revert(connection: Any, apps: Any, *, progress: Progress | None = None) -> ReverseResult:
    """Delete the organizations and developers the conversion created (and rows that only exist through them).

    Refuses, deleting nothing, when a developer added after the conversion belongs to a converted organization, or
    when another table protects a converted row. Never touches `customers`.
    """
    tables = Tables.from_apps(apps, connection)
    say = progress or (lambda _msg: None)
    result = ReverseResult()
    legacy = "legacy_customer_id IS NOT NULL"

    strangers = _rows(
        connection,
        f"""SELECT d.id, d.email, o.name FROM {tables.developers} d
            JOIN {tables.organizations} o ON o.id = d.organization_id
            WHERE o.{legacy} AND d.legacy_customer_id IS NULL ORDER BY o.name, d.email""",
    )
    if strangers:
        listed = "\n".join(f"  - developer {email} ({_uuid_text(dev_id)}) in {org}" for dev_id, email, org in strangers)
        raise LegacyReverseError(
            "Cannot undo the legacy conversion: these developers were added to converted organizations afterwards, "
            "and deleting the organizations would lose them. Move them to another organization or delete them "
            f"first, then roll back again. Nothing was deleted.\n{listed}"
        )

    # Other tables pointing at converted rows (usage events, dj-stripe customers, …): follow their on_delete.
    steps: list[tuple[str, str, str]] = []
    blockers: list[str] = []
    for model in (tables.developer_model, tables.organization_model):
        parent = connection.ops.quote_name(model._meta.db_table)
        for rel in _relations_to(model):
            if rel.related_model in (tables.developer_model, tables.organization_model):
                continue  # developers of converted organizations are converted rows themselves (checked above)
            child = connection.ops.quote_name(rel.related_model._meta.db_table)
            column = connection.ops.quote_name(rel.field.column)
            where = f"{column} IN (SELECT id FROM {parent} WHERE {legacy})"
            label = rel.related_model._meta.label
            if rel.on_delete is models.SET_NULL:
                steps.append((label, f"UPDATE {child} SET {column} = NULL WHERE {where}", "updated"))
            elif rel.on_delete is models.CASCADE and not _relations_to(rel.related_model):
                steps.append((label, f"DELETE FROM {child} WHERE {where}", "deleted"))
            else:
                (count,) = _rows(connection, f"SELECT count(*) FROM {child} WHERE {where}")[0]
                if count:
                    blockers.append(f"  - {count} {label} row(s) point at converted {model._meta.model_name}s")
    if blockers:
        raise LegacyReverseError(
            "Cannot undo the legacy conversion: rows of other tables depend on converted organizations or "
            "developers. Remove them first, then roll back again. Nothing was deleted.\n" + "\n".join(blockers)
        )
    for label, sql, verb in steps:
        count = _execute(connection, sql)
        if count:
            result.related_rows[f"{label} {verb}"] = count

    result.developers_deleted = _execute(connection, f"DELETE FROM {tables.developers} WHERE {legacy}")
    result.organizations_deleted = _execute(connection, f"DELETE FROM {tables.organizations} WHERE {legacy}")
    say(
        f"removed {result.developers_deleted} developers and {result.organizations_deleted} organizations "
        "created by the legacy conversion."
    )
    return result


def _relations_to(model: Any) -> list[Any]:
    """Foreign keys of other models to `model` (including many-to-many through tables), as the deletion collector
    finds them."""
    return [
        f
        for f in model._meta.get_fields(include_hidden=True)
        if f.auto_created and not f.concrete and (f.one_to_one or f.one_to_many)
    ]
