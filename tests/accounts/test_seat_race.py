"""Concurrency: the organization row lock makes the last free seat go to exactly one caller."""

import pytest

from accounts import services
from accounts.exceptions import AccountsError, DuplicateEmail, SeatLimitReached
from accounts.models import Developer
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support import threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

THREADS = 20


def race(work) -> list[object]:
    return threads.race(work, THREADS)


def test_twenty_callers_for_one_free_seat_exactly_one_wins():
    org = OrganizationFactory(name="Acme", max_seats=3)
    DeveloperFactory.create_batch(2, organization=org)

    results = race(lambda i: services.add_developer(organization=org, email=f"racer{i}@acme.com"))

    winners = [r for r in results if isinstance(r, tuple)]
    losers = [r for r in results if isinstance(r, SeatLimitReached)]
    assert len(winners) == 1
    assert len(losers) == THREADS - 1, [r for r in results if not isinstance(r, tuple | SeatLimitReached)]
    assert all("Acme uses 3 of 3 seats" in r.message for r in losers)
    assert Developer.objects.filter(organization=org).count() == 3


def test_twenty_reactivations_for_one_free_seat_exactly_one_wins():
    org = OrganizationFactory(max_seats=1)
    sleepers = DeveloperFactory.create_batch(THREADS, organization=org, is_active=False)

    results = race(lambda i: services.activate_developer(developer=sleepers[i]))

    assert results.count(True) == 1
    assert sum(isinstance(r, SeatLimitReached) for r in results) == THREADS - 1
    assert Developer.objects.filter(organization=org, is_active=True).count() == 1


def test_twenty_callers_with_one_email_exactly_one_wins_and_the_others_get_a_clear_error():
    orgs = OrganizationFactory.create_batch(THREADS, max_seats=1)

    results = race(lambda i: services.add_developer(organization=orgs[i], email="same@acme.com"))

    assert sum(isinstance(r, tuple) for r in results) == 1
    errors = [r for r in results if isinstance(r, AccountsError)]
    assert len(errors) == THREADS - 1
    assert all(isinstance(r, DuplicateEmail) for r in errors)
    assert Developer.objects.filter(email="same@acme.com").count() == 1
