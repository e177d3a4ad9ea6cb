"""The organization pages' people: `org` with its owner, an admin and a member (each with a key), and another
organization with its owner; `sign_in(client, developer)` signs a developer in to Django's test client as
`oauth.views.start_session` does (their shadow user, a sign-in of now)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from django.test import Client

from accounts.choices import Role
from accounts.models import Developer, Organization
from oauth import grants
from oauth.views import SESSION_SIGNED_IN_AT
from tests.factories import DeveloperFactory, OrganizationFactory


def sign_in(client: Client, developer: Developer) -> Client:
    """`client` signed in as `developer` (a recent sign-in)."""
    client.force_login(grants.shadow_user(developer=developer), backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    session[SESSION_SIGNED_IN_AT] = int(time.time())
    session.save()
    return client


@dataclass
class People:
    org: Organization
    owner: Developer
    admin: Developer
    member: Developer
    other_org: Organization
    other_owner: Developer


@pytest.fixture
def people(db) -> People:
    org = OrganizationFactory(name="Acme", max_seats=5)
    other_org = OrganizationFactory(name="Globex", max_seats=5)
    return People(
        org=org,
        owner=DeveloperFactory(organization=org, email="owner@acme.test", role=Role.OWNER),
        admin=DeveloperFactory(organization=org, email="admin@acme.test", role=Role.ADMIN),
        member=DeveloperFactory(organization=org, email="member@acme.test", role=Role.MEMBER),
        other_org=other_org,
        other_owner=DeveloperFactory(organization=other_org, email="owner@globex.test", role=Role.OWNER),
    )


@pytest.fixture
def as_owner(people: People) -> Client:
    return sign_in(Client(), people.owner)


@pytest.fixture
def as_admin(people: People) -> Client:
    return sign_in(Client(), people.admin)


@pytest.fixture
def as_member(people: People) -> Client:
    return sign_in(Client(), people.member)


@pytest.fixture
def as_other_owner(people: People) -> Client:
    return sign_in(Client(), people.other_owner)


@pytest.fixture(autouse=True)
def _portal_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]


@pytest.fixture(autouse=True)
def _fresh_plan_table():
    """The plan table (`accounts.plans.terms_for`) is read afresh by each test: plans are made per test."""
    from accounts import plans

    plans.forget_table()
    yield
    plans.forget_table()
