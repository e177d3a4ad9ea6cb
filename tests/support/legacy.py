"""The old system's `customers` table, created in tests, and driving the real migration back and forth."""

# SQL built from this module's column names only.
# ruff: noqa: S608

from __future__ import annotations

import datetime
import uuid
from typing import Any

from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from tests.support.migrations import migrate

BEFORE = ("accounts", "0001_initial")
CONVERSION = ("accounts", "0006_convert_legacy_customers")

COLUMNS = (
    "id",
    "stripe_customer_id",
    "email",
    "first_name",
    "last_name",
    "company",
    "subscription_status",
    "subscription_updated_at",
    "api_key_hash",
    "api_key_prefix",
    "api_key_created_at",
    "api_key_revoked_at",
    "api_key_last_used_at",
    "created_at",
)
_TIMESTAMPS = {c for c in COLUMNS if c.endswith("_at")}


def create_customers_table() -> None:
    """The legacy table as the old system had it (PostgreSQL types; SQLite stores what Django would)."""
    if connection.vendor == "postgresql":
        ts, pk = "TIMESTAMP", "UUID PRIMARY KEY"
    else:
        ts, pk = "datetime", "char(32) PRIMARY KEY"
    columns = ", ".join(
        f"{c} {pk if c == 'id' else ts if c in _TIMESTAMPS else 'TEXT NOT NULL' if c == 'email' else 'TEXT'}"
        for c in COLUMNS
    )
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE customers ({columns})")


def drop_customers_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS customers")


def customer(**values: Any) -> dict[str, Any]:
    """A customers row; every column not given is NULL (real data is like that), except id and email."""
    row = dict.fromkeys(COLUMNS)
    row["id"] = uuid.uuid4()
    row["email"] = f"{row['id'].hex[:8]}@example.com"
    row.update(values)
    return row


def insert_customers(*rows: dict[str, Any]) -> None:
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO customers ({', '.join(COLUMNS)}) VALUES ({placeholders})",
            [[_db_value(column, row[column]) for column in COLUMNS] for row in rows],
        )


def update_customer(customer_id: uuid.UUID, **values: Any) -> None:
    assignments = ", ".join(f"{column} = %s" for column in values)
    params = [_db_value(c, v) for c, v in values.items()] + [_db_value("id", customer_id)]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE customers SET {assignments} WHERE id = %s", params)


def customers_snapshot() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(COLUMNS)} FROM customers ORDER BY id")
        return cursor.fetchall()


def _db_value(column: str, value: Any) -> Any:
    if connection.vendor == "postgresql" or value is None:
        return value
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    return value


# --- the migration --------------------------------------------------------------------------------------------------


def migrate_forward() -> None:
    """Accounts up to the conversion, then everything to the latest (so the current models match the schema)."""
    migrate(CONVERSION)
    migrate()


def is_applied(migration: tuple[str, str]) -> bool:
    return migration in MigrationRecorder(connection).applied_migrations()
