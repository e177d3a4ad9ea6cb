"""PostgreSQL: the raw usage events become a table partitioned by UTC month (`accounts.partitions`), with a partition
for every month that has events and three months ahead. Django's model is unchanged (primary key `id`; the table's
own primary key is `(id, created_at)`, as partitioning requires). SQLite keeps the plain table."""

import sys

from django.db import migrations

from accounts import partitions


def _say(message: str) -> None:
    if sys.stdout.isatty():
        print(f"\n  {message}", flush=True)


def partition(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql" and not partitions.is_partitioned(connection):
        partitions.partition_events(connection, progress=_say)


def unpartition(apps, schema_editor):
    connection = schema_editor.connection
    if partitions.is_partitioned(connection):
        partitions.unpartition_events(connection)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_usage_rollups"),
    ]

    operations = [migrations.RunPython(partition, unpartition)]
