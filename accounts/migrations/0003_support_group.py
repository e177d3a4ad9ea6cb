"""Custom key permissions on Developer, and the "Support" staff group: view everything, revoke keys, nothing else.

"Everything" is everything of this app: no dj-stripe models. dj-stripe's admin offers its "re-sync" and "sync all
instances" actions to anyone who may view a model, and they write (they call Stripe and update the synced rows),
so view rights there would give Support more than revoking keys. The organization page shows its dj-stripe links
only to staff who can open them.

Permissions normally appear only in post_migrate, after every migration has run, so this migration creates the
content types and permissions it needs itself; post_migrate later finds them and adds nothing twice.
"""

from django.db import migrations

SUPPORT_GROUP = "Support"

# (model, codename, name) — view rights on every accounts model, plus revoking keys.
SUPPORT_PERMISSIONS = [
    ("organization", "view_organization", "Can view organization"),
    ("developer", "view_developer", "Can view developer"),
    ("usageevent", "view_usageevent", "Can view usage event"),
    ("developer", "revoke_key", "Can revoke developer API keys"),
]


def create_support_group(apps, schema_editor):
    db = schema_editor.connection.alias
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    permissions = []
    for model, codename, name in SUPPORT_PERMISSIONS:
        content_type, _ = ContentType.objects.using(db).get_or_create(app_label="accounts", model=model)
        permission, _ = Permission.objects.using(db).get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        permissions.append(permission)
    group, _ = Group.objects.using(db).get_or_create(name=SUPPORT_GROUP)
    group.permissions.add(*permissions)


def keep_support_group(apps, schema_editor):
    """Rolling back keeps the group: `migrate accounts 0001_initial` (undoing the legacy conversion) must not take
    staff out of it. Migrating forward again finds it and only makes sure of its permissions."""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_legacy_conversion"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="developer",
            options={
                "ordering": ["email"],
                "permissions": [
                    ("revoke_key", "Can revoke developer API keys"),
                    ("rotate_key", "Can rotate developer API keys"),
                ],
            },
        ),
        migrations.RunPython(create_support_group, keep_support_group),
    ]
