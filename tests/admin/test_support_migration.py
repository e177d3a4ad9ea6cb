"""0003_support_group: the custom key permissions and the "Support" group, forward and backward."""

import pytest
from django.contrib.auth.models import Group, Permission, User

from tests.support.migrations import migrate

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("accounts", "0002_legacy_conversion")
AFTER = ("accounts", "0003_support_group")


def test_the_migration_is_reversible_and_a_rollback_keeps_the_group_and_its_members(support_group):
    member = User.objects.create_user("sam", is_staff=True)
    member.groups.add(support_group)
    try:
        migrate(BEFORE)  # as when the legacy conversion is rolled back
        assert list(member.groups.values_list("name", flat=True)) == ["Support"]
        Group.objects.get(name="Support").permissions.clear()
        migrate(AFTER)
        group = Group.objects.get(name="Support")
        assert set(group.permissions.values_list("codename", flat=True)) == {
            "view_organization",
            "view_developer",
            "view_usageevent",
            "revoke_key",
        }
        # Permissions are not duplicated when post_migrate creates the same ones.
        assert Permission.objects.filter(content_type__app_label="accounts", codename="revoke_key").count() == 1
    finally:
        migrate()


def test_custom_permissions_exist_for_both_key_actions():
    names = dict(
        Permission.objects.filter(content_type__app_label="accounts", content_type__model="developer").values_list(
            "codename", "name"
        )
    )
    assert names["revoke_key"] == "Can revoke developer API keys"
    assert names["rotate_key"] == "Can rotate developer API keys"


def test_0016_gives_support_the_memberships_and_takes_only_those_back(support_group):
    memberships = {"view_invitation", "change_invitation", "view_alertsent"}
    try:
        migrate(("accounts", "0015_history_index"))
        left = set(Group.objects.get(name="Support").permissions.values_list("codename", flat=True))
        assert left == {"view_organization", "view_developer", "view_usageevent", "revoke_key"}
        migrate(("accounts", "0016_support_sees_memberships"))
        after = set(Group.objects.get(name="Support").permissions.values_list("codename", flat=True))
        assert after == left | memberships
    finally:
        migrate()
