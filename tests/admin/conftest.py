import importlib
import types

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission, User
from django.db import connection

from tests.factories import DeveloperFactory, OrganizationFactory


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("boss", "boss@hotcross.test", "pw-boss-123")


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def support_group(db) -> Group:
    """The group as migrations 0003 and 0016 make it.

    A transactional test (live server, migration test) empties every table, the rows data migrations wrote
    included, and `--reuse-db` keeps that state; then the migration's own function puts the group back. That the
    migration itself creates it is tested in test_support_migration.py.
    """
    if not Group.objects.filter(name="Support").exists():
        editor = types.SimpleNamespace(connection=connection)
        importlib.import_module("accounts.migrations.0003_support_group").create_support_group(django_apps, editor)
        memberships = importlib.import_module("accounts.migrations.0016_support_sees_memberships")
        memberships.let_support_see_memberships(django_apps, editor)
    return Group.objects.get(name="Support")


@pytest.fixture
def support_user(support_group) -> User:
    """A staff user whose only rights come from the "Support" group."""
    user = User.objects.create_user("sam", "sam@hotcross.test", "pw-sam-123", is_staff=True)
    user.groups.add(support_group)
    return user


@pytest.fixture
def support_client(client, support_user):
    client.force_login(support_user)
    return client


@pytest.fixture
def make_staff(db):
    """A staff user with exactly the named permissions (codenames in the accounts app)."""

    def make(*codenames: str, username: str = "staffer") -> User:
        user = User.objects.create_user(username, f"{username}@hotcross.test", "pw-123", is_staff=True)
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="accounts", codename__in=codenames)
        )
        return User.objects.get(pk=user.pk)  # fresh permission cache

    return make


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme Corp", max_seats=3, stripe_customer_id="cus_acme")


@pytest.fixture
def developer(org):
    return DeveloperFactory(organization=org, email="ada@acme.test")
