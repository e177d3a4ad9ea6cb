"""The "Support" group (0003) also sees the memberships of issue 30: invitations and the alerts mailed to owners, on
their lists and on the organization page. It may revoke an invitation too, as it may revoke a key: an invitation link
is a credential, and "revoke" is the only write of the invitation admin (its fields are read-only, nothing is added
or deleted there). No rights on anything else.

As in 0003, the content types and permissions are made here, since post_migrate runs only after every migration."""

from django.db import migrations

SUPPORT_GROUP = "Support"

# (model, codename, name)
MEMBERSHIP_PERMISSIONS = [
    ("invitation", "view_invitation", "Can view invitation"),
    ("invitation", "change_invitation", "Can change invitation"),
    ("alertsent", "view_alertsent", "Can view alert sent"),
]


def _permissions(apps, db):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    permissions = []
    for model, codename, name in MEMBERSHIP_PERMISSIONS:
        content_type, _ = ContentType.objects.using(db).get_or_create(app_label="accounts", model=model)
        permission, _ = Permission.objects.using(db).get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        permissions.append(permission)
    return permissions


def let_support_see_memberships(apps, schema_editor):
    db = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    group, _ = Group.objects.using(db).get_or_create(name=SUPPORT_GROUP)
    group.permissions.add(*_permissions(apps, db))


def take_memberships_from_support(apps, schema_editor):
    """Backward: the group keeps what 0003 gave it and loses these rights only."""
    db = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    group = Group.objects.using(db).filter(name=SUPPORT_GROUP).first()
    if group is not None:
        group.permissions.remove(*_permissions(apps, db))


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0015_history_index"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(let_support_see_memberships, take_memberships_from_support),
    ]
