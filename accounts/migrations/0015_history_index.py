"""The admin history of one object (an organization's history page on /org/, the admin's history views) reads
`django_admin_log` by (content_type_id, object_id), which Django does not index: with a million lines the page
scanned the table (~135 ms on the bench); with this index ~33 ms (bench/org_pages.py)."""

from django.db import migrations

INDEX = "hotcross_admin_log_object_idx"


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0014_self_service"),
        ("admin", "0003_logentry_add_action_flag_choices"),
    ]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON django_admin_log (content_type_id, object_id)",
            f"DROP INDEX IF EXISTS {INDEX}",
        ),
    ]
