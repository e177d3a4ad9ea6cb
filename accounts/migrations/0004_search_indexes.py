"""Trigram indexes for the admin's searches (PostgreSQL only).

The admin searches developers by any part of their email, names or key prefix, and organizations by any part of
their name or their developers' emails: `UPPER(column) LIKE UPPER('%term%')`, which no B-tree index serves. With
100 000 developers each search was two sequential scans (the page and its count), over the admin's 300 ms budget;
pg_trgm's GIN indexes on exactly those expressions answer them in milliseconds.

pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it. SQLite, for development, does
without these indexes.
"""

from django.db import migrations

INDEXES = [
    ("developer_email_trgm", "accounts_developer", "email"),
    ("developer_first_name_trgm", "accounts_developer", "first_name"),
    ("developer_last_name_trgm", "accounts_developer", "last_name"),
    ("developer_key_prefix_trgm", "accounts_developer", "api_key_prefix"),
    ("organization_name_trgm", "accounts_organization", "name"),
]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, column in INDEXES:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _table, _column in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')  # the extension stays: others may use it


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_support_group")]

    operations = [migrations.RunPython(create_indexes, drop_indexes, elidable=False)]
