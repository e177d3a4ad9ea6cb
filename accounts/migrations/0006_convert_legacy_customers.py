"""Convert the old system's `customers` rows into organizations and developers (see `accounts.legacy`).

Does nothing where the table does not exist (new installs). Atomic: any row that cannot be converted stops the
migration before anything is written, with the list of rows and how to fix them. The reverse removes exactly what the
conversion created; `customers` is only ever read. It runs after `0005`, which widened the columns whose limits were
only a choice of ours, so a legal legacy value (a long company name) converts with nothing lost.
"""

import sys

from django.core.management.base import CommandError
from django.db import migrations

from accounts import legacy


def _progress(connection, apps):
    """Progress lines on an interactive terminal, for tables large enough to take a while."""
    if not sys.stdout.isatty():
        return None
    count = legacy.Legacy.from_apps(apps, connection).customers().count()
    if count < legacy.PROGRESS_THRESHOLD:
        return None
    print(f"\n  legacy conversion: {count} customers", flush=True)
    return lambda message: print(f"  legacy conversion: {message}", flush=True)


def convert_customers(apps, schema_editor):
    connection = schema_editor.connection
    if not legacy.Legacy.from_apps(apps, connection).customers_table_exists():
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
    dependencies = [("accounts", "0005_seats_and_unbounded_names")]

    operations = [migrations.RunPython(convert_customers, remove_converted, elidable=False)]
