"""Convert the old system's `customers` rows into organizations and developers (see `accounts.legacy`).

Does nothing where the table does not exist (new installs). Atomic: any row that cannot be converted stops the
migration before anything is written, with the list of rows and how to fix them. The reverse removes exactly what the
conversion created; `customers` is only ever read.
"""

import sys

from django.core.management.base import CommandError
from django.db import migrations, models

from accounts import legacy


def _progress(connection, apps):
    """Progress lines on an interactive terminal, for tables large enough to take a while."""
    if not sys.stdout.isatty():
        return None
    count = legacy.count_customers(connection, legacy.Tables.from_apps(apps, connection))
    if count < legacy.PROGRESS_THRESHOLD:
        return None
    print(f"\n  legacy conversion: {count} customers", flush=True)
    return lambda message: print(f"  legacy conversion: {message}", flush=True)


def convert_customers(apps, schema_editor):
    connection = schema_editor.connection
    if not legacy.table_exists(connection, apps.get_model("accounts", "LegacyCustomer")._meta.db_table):
        return
    try:
        legacy.convert(connection, apps, progress=_progress(connection, apps))
    except legacy.LegacyConversionError as exc:
        # A CommandError is printed by `migrate` as a message, not a traceback.
        raise CommandError(exc.message) from None


def remove_converted(apps, schema_editor):
    try:
        legacy.revert(schema_editor.connection, apps)
    except legacy.LegacyReverseError as exc:
        raise CommandError(exc.message) from None


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="LegacyCustomer",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("stripe_customer_id", models.TextField(blank=True, null=True)),
                ("email", models.TextField()),
                ("first_name", models.TextField(blank=True, null=True)),
                ("last_name", models.TextField(blank=True, null=True)),
                ("company", models.TextField(blank=True, null=True)),
                ("subscription_status", models.TextField(blank=True, null=True)),
                ("subscription_updated_at", models.DateTimeField(blank=True, null=True)),
                ("api_key_hash", models.TextField(blank=True, null=True)),
                ("api_key_prefix", models.TextField(blank=True, null=True)),
                ("api_key_created_at", models.DateTimeField(blank=True, null=True)),
                ("api_key_revoked_at", models.DateTimeField(blank=True, null=True)),
                ("api_key_last_used_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "db_table": "customers",
                "ordering": ["email"],
                "managed": False,
            },
        ),
        migrations.RunPython(convert_customers, remove_converted, elidable=False),
    ]
