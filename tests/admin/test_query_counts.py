"""The lists and the organization page run the same number of queries whatever the amount of data."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization, UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory, UsageEventFactory

pytestmark = pytest.mark.django_db

# The lists: session, user, count and rows. Measured: 4.
MAX_QUERIES = 6
# The organization page: session, user, the organization, its developers, usage counts, emails, its invitations and
# the alerts mailed to its owners, and (for a superuser) whether dj-stripe has synced its customer. Measured: 9.
ORGANIZATION_PAGE_QUERIES = 9


def seed(organizations: int, developers_each: int, events_each: int):
    orgs = OrganizationFactory.create_batch(organizations)
    now = timezone.now()
    for org in orgs:
        devs = DeveloperFactory.create_batch(developers_each, organization=org, api_key_last_used_at=now)
        UsageEvent.objects.bulk_create(
            UsageEventFactory.build(
                developer=devs[i % len(devs)], created_at=now - datetime.timedelta(hours=7 * i), ok=i % 5 != 0
            )
            for i in range(events_each)
        )
    return orgs


def count(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "page",
    [
        "organizations",
        "organizations_over_limit",
        "organizations_search",
        "organization",
        "developers",
        "developers_filtered",
        "developers_search",
    ],
)
def test_constant_queries(staff_client, django_assert_max_num_queries, page):
    def url(orgs):
        return {
            "organizations": reverse("admin:accounts_organization_changelist"),
            "organizations_search": reverse("admin:accounts_organization_changelist") + "?q=dev&over_seat_limit=no",
            "organizations_over_limit": reverse("admin:accounts_organization_changelist") + "?over_seat_limit=yes&o=3",
            "developers_search": reverse("admin:accounts_developer_changelist") + "?q=example.com",
            "developers": reverse("admin:accounts_developer_changelist"),
            "developers_filtered": reverse("admin:accounts_developer_changelist")
            + "?is_active__exact=1&revoked=no&organization__subscription_status__exact=active",
            "organization": reverse("admin:accounts_organization_change", args=[orgs[0].pk]),
        }[page]

    small = seed(1, 1, 1)
    if page == "organizations_over_limit":
        # With nobody over the limit the page needs no rows at all: compare pages that list some.
        Organization.objects.filter(pk=small[0].pk).update(max_seats=0)
    staff_client.get(url(small))  # warm per-process caches (content types) so they do not count
    small_count = count(staff_client, url(small))
    big = seed(40, 6, 60)
    if page == "organizations_over_limit":
        Organization.objects.filter(pk__in=[org.pk for org in big[::3]]).update(max_seats=2)
    big_count = count(staff_client, url(big + small))
    bigger = big + small
    assert big_count == small_count
    with django_assert_max_num_queries(ORGANIZATION_PAGE_QUERIES if page == "organization" else MAX_QUERIES):
        staff_client.get(url(bigger))
    # The organization page of a large organization costs the same as a small one's.
    if page == "organization":
        assert count(staff_client, url(big)) == small_count
