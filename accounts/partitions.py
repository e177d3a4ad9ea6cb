"""Raw usage events on PostgreSQL: one partition per UTC month (declarative range partitioning on `created_at`),
created ahead, and dropped whole once older than the retention (`HOTCROSS_USAGE_RAW_RETENTION_DAYS`).

The figures people read come from the rollups (`UsageRollup`), which are kept; raw events are for drill-down. On SQLite
the events stay a plain table and the retention deletes rows.

Layout (PostgreSQL): `accounts_usageevent` is the partitioned parent, with primary key `(id, created_at)` (a partitioned
table's unique keys must include the partition key) and `id` from its own sequence, so Django's model (primary key
`id`) is unchanged; partitions `accounts_usageevent_pYYYYMM` for each month, and `accounts_usageevent_pdefault` for
any time without a partition (an event is never refused for its time). Creating a month's partition moves that
month's rows out of the default partition in the same transaction.

Plain SQL on table names, for the migration that converts the table (it must not import today's models) and for
`manage.py usage partitions` / `usage prune`.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

TABLE = "accounts_usageevent"
DEFAULT = f"{TABLE}_pdefault"
SEQUENCE = f"{TABLE}_id_seq"
AHEAD_MONTHS = 3


def month_start(moment: datetime.date | datetime.datetime) -> datetime.datetime:
    return datetime.datetime(moment.year, moment.month, 1, tzinfo=datetime.UTC)


def next_month(start: datetime.datetime) -> datetime.datetime:
    return (start + datetime.timedelta(days=32)).replace(day=1)


def partition_name(start: datetime.datetime) -> str:
    return f"{TABLE}_p{start:%Y%m}"


def is_partitioned(connection: BaseDatabaseWrapper) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


@dataclasses.dataclass(frozen=True)
class Partition:
    name: str
    start: datetime.datetime | None  # None: the default partition
    end: datetime.datetime | None
    rows: int | None = None  # an estimate (pg_class.reltuples), when asked


def partitions(connection: BaseDatabaseWrapper) -> list[Partition]:
    """The month partitions, oldest first, then the default one."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.relname, GREATEST(c.reltuples, 0)::bigint
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = to_regclass(%s)""",
            [TABLE],
        )
        rows = cursor.fetchall()
    found = []
    for name, estimate in rows:
        if name == DEFAULT:
            found.append(Partition(name, None, None, estimate))
            continue
        start = datetime.datetime.strptime(name.rsplit("_p", 1)[1], "%Y%m").replace(tzinfo=datetime.UTC)
        found.append(Partition(name, start, next_month(start), estimate))
    return sorted(found, key=lambda p: (p.start is None, p.start or datetime.datetime.min.replace(tzinfo=datetime.UTC)))


def create_partitions(
    connection: BaseDatabaseWrapper, *, until: datetime.datetime, since: datetime.datetime | None = None
) -> list[str]:
    """Create the month partitions from `since` (default: this month) up to the month of `until`, those missing;
    each takes its month's rows from the default partition in the same transaction. Returns the names created."""
    quote = connection.ops.quote_name
    existing = {p.name for p in partitions(connection)}
    created = []
    start = month_start(since or datetime.datetime.now(datetime.UTC))
    while start <= until:
        end = next_month(start)
        name = partition_name(start)
        if name not in existing:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(
                    f"CREATE TEMPORARY TABLE hotcross_moving AS WITH moved AS ("  # noqa: S608
                    f"DELETE FROM {quote(DEFAULT)} WHERE created_at >= %s AND created_at < %s RETURNING *) "
                    "SELECT * FROM moved",
                    [start, end],
                )
                cursor.execute(
                    f"CREATE TABLE {quote(name)} PARTITION OF {quote(TABLE)} FOR VALUES FROM (%s) TO (%s)",
                    [start, end],
                )
                cursor.execute(f"INSERT INTO {quote(TABLE)} SELECT * FROM hotcross_moving")  # noqa: S608
                cursor.execute("DROP TABLE hotcross_moving")
            created.append(name)
        start = end
    return created


def drop_partitions_before(connection: BaseDatabaseWrapper, cutoff: datetime.datetime) -> list[str]:
    """Drop the month partitions whose every event is older than `cutoff` (their month ended by then). Returns the
    names dropped. The rollups are not touched."""
    dropped = []
    for partition in partitions(connection):
        if partition.end is not None and partition.end <= cutoff:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {connection.ops.quote_name(partition.name)}")
            dropped.append(partition.name)
    return dropped


# --- converting the table (migration 0009) ----------------------------------------------------------------------------


def _indexes_and_foreign_keys(connection: BaseDatabaseWrapper, table: str) -> tuple[list[str], list[str]]:
    """The CREATE INDEX statements (not the primary key's) and ADD CONSTRAINT … FOREIGN KEY clauses of `table`."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
               WHERE i.indrelid = to_regclass(%s) AND NOT i.indisprimary
                 AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)""",
            [table],
        )
        indexes = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass(%s) "
            "AND contype = 'f'",
            [table],
        )
        foreign_keys = [f"ADD CONSTRAINT {connection.ops.quote_name(name)} {body}" for name, body in cursor.fetchall()]
    return indexes, foreign_keys


def partition_events(connection: BaseDatabaseWrapper, progress: Callable[[str], None] | None = None) -> None:
    """Turn the plain events table into the partitioned one (inside the migration's transaction): same columns,
    indexes and foreign keys; a partition for every month that has events, up to `AHEAD_MONTHS` ahead."""
    quote = connection.ops.quote_name
    say = progress or (lambda _message: None)
    indexes, foreign_keys = _indexes_and_foreign_keys(connection, TABLE)
    plain = f"{TABLE}_plain"
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {quote(TABLE)} RENAME TO {quote(plain)}")
        cursor.execute(
            f"ALTER TABLE {quote(plain)} RENAME CONSTRAINT {quote(TABLE + '_pkey')} TO {quote(plain + '_pkey')}"
        )
        # The id's generator (an identity, or a sequence after a reverse migration) is made anew below.
        cursor.execute(f"ALTER TABLE {quote(plain)} ALTER COLUMN id DROP IDENTITY IF EXISTS")
        cursor.execute(f"ALTER TABLE {quote(plain)} ALTER COLUMN id DROP DEFAULT")
        cursor.execute(f"DROP SEQUENCE IF EXISTS {quote(SEQUENCE)}")
        cursor.execute(
            f"CREATE TABLE {quote(TABLE)} (LIKE {quote(plain)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
            "PARTITION BY RANGE (created_at)"
        )
        cursor.execute(f"ALTER TABLE {quote(TABLE)} ADD PRIMARY KEY (id, created_at)")
        cursor.execute(f"CREATE TABLE {quote(DEFAULT)} PARTITION OF {quote(TABLE)} DEFAULT")
        cursor.execute(f"SELECT MIN(created_at), MAX(id), COUNT(*) FROM {quote(plain)}")  # noqa: S608
        oldest, max_id, count = cursor.fetchone()
    now = datetime.datetime.now(datetime.UTC)
    create_partitions(connection, since=min(oldest, now) if oldest else now, until=_ahead(now))
    say(f"copying {count} usage events into monthly partitions")
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(TABLE)} SELECT * FROM {quote(plain)}")  # noqa: S608
        cursor.execute(f"DROP TABLE {quote(plain)}")  # with its indexes and foreign keys
        cursor.execute(f"CREATE SEQUENCE {quote(SEQUENCE)} OWNED BY {quote(TABLE)}.id")
        cursor.execute("SELECT setval(%s, %s, %s)", [SEQUENCE, max_id or 1, max_id is not None])
        cursor.execute(f"ALTER TABLE {quote(TABLE)} ALTER COLUMN id SET DEFAULT nextval('{SEQUENCE}'::regclass)")
        say("indexing the partitions")
        for statement in indexes:
            cursor.execute(statement)
        for clause in foreign_keys:
            cursor.execute(f"ALTER TABLE {quote(TABLE)} {clause}")


def unpartition_events(connection: BaseDatabaseWrapper) -> None:
    """The reverse of `partition_events`: one plain table again, same rows, indexes and foreign keys."""
    quote = connection.ops.quote_name
    indexes, foreign_keys = _indexes_and_foreign_keys(connection, TABLE)
    parted = f"{TABLE}_parted"
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER SEQUENCE {quote(SEQUENCE)} OWNED BY NONE")
        cursor.execute(f"ALTER TABLE {quote(TABLE)} RENAME TO {quote(parted)}")
        cursor.execute(
            f"ALTER TABLE {quote(parted)} RENAME CONSTRAINT {quote(TABLE + '_pkey')} TO {quote(parted + '_pkey')}"
        )
        cursor.execute(f"ALTER TABLE {quote(DEFAULT)} RENAME TO {quote(DEFAULT + '_old')}")
        cursor.execute(f"CREATE TABLE {quote(TABLE)} (LIKE {quote(parted)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(f"ALTER TABLE {quote(TABLE)} ADD PRIMARY KEY (id)")
        cursor.execute(f"INSERT INTO {quote(TABLE)} SELECT * FROM {quote(parted)}")  # noqa: S608
        cursor.execute(f"DROP TABLE {quote(parted)}")  # and its partitions
        cursor.execute(f"ALTER SEQUENCE {quote(SEQUENCE)} OWNED BY {quote(TABLE)}.id")
        for statement in indexes:
            cursor.execute(statement)
        for clause in foreign_keys:
            cursor.execute(f"ALTER TABLE {quote(TABLE)} {clause}")


def _ahead(now: datetime.datetime) -> datetime.datetime:
    start = month_start(now)
    for _ in range(AHEAD_MONTHS):
        start = next_month(start)
    return start
