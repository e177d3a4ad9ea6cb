"""The old system's `customers` table as an unmanaged model (`LegacyCustomer`): Django never creates or drops it.

The conversion of its rows ran here until it moved to `0006_convert_legacy_customers`, after the columns it writes
into were widened (`0005`); databases converted here keep that history, and `0006` converts only customers without a
developer yet, so it finds nothing more to do on them.
"""

from django.db import migrations, models


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
    ]
