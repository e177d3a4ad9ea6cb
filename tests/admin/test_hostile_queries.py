"""Query strings and posts that staff (or anyone holding a staff session) could craft: refused cleanly, never a way
to read what the pages do not show, never a server error."""

from __future__ import annotations

import pytest
from django.urls import reverse
from djstripe.models import Customer

from tests.factories import DeveloperFactory, OrganizationFactory

DEVELOPERS = "admin:accounts_developer_changelist"
ORGANIZATIONS = "admin:accounts_organization_changelist"


@pytest.mark.parametrize(
    ("changelist", "lookup"),
    [
        (DEVELOPERS, "api_key_hash__startswith"),
        (DEVELOPERS, "api_key_hash__regex"),
        (DEVELOPERS, "api_key_hash"),
        (DEVELOPERS, "organization__developers__api_key_hash__startswith"),
        (DEVELOPERS, "legacy_customer_id__isnull"),
        (ORGANIZATIONS, "developers__api_key_hash__startswith"),
        (ORGANIZATIONS, "stripe_customer_id__startswith"),
        (ORGANIZATIONS, "subscription_id__contains"),
    ],
)
def test_a_lookup_no_filter_offers_is_refused_400(support_client, developer, changelist, lookup):
    """Support staff may view developers but must never learn a key hash by filtering on prefixes of it."""
    response = support_client.get(reverse(changelist), {lookup: developer.api_key_hash[:6]})
    assert response.status_code == 400
    assert developer.email not in response.content.decode()


def test_the_offered_filters_and_links_still_work(staff_client, developer):
    org = developer.organization
    other = DeveloperFactory(organization=OrganizationFactory(subscription_status="canceled"))
    pages = {
        DEVELOPERS: [
            {"organization__id__exact": str(org.pk)},
            {"organization__subscription_status__exact": "active"},
            {"is_active__exact": "1"},
            {"revoked": "no"},
            {"q": "ada"},
        ],
        ORGANIZATIONS: [
            {"subscription_status__exact": "active"},
            {"pricing_model__exact": "per_organization"},
            {"over_seat_limit": "no"},
        ],
    }
    for changelist, queries in pages.items():
        for query in queries:
            response = staff_client.get(reverse(changelist), query)
            assert response.status_code == 200, (changelist, query)
    listed = staff_client.get(reverse(DEVELOPERS), {"organization__id__exact": str(org.pk)}).content.decode()
    assert developer.email in listed and other.email not in listed


@pytest.mark.parametrize("selected", ["abc", "1' OR 1=1 --", "99999999999999999999999999", "", "\x00"])
def test_an_action_on_ids_that_are_not_ids_is_a_400(staff_client, developer, selected):
    for url, action in (
        (reverse(DEVELOPERS), "deactivate"),
        (reverse(ORGANIZATIONS), "set_status"),
        (reverse("admin:djstripe_customer_changelist"), "_resync_instances"),
    ):
        response = staff_client.post(url, {"action": action, "_selected_action": [selected], "index": "0"})
        assert response.status_code == 400, (url, response.status_code)
    developer.refresh_from_db()
    assert developer.is_active
    assert not Customer.objects.exists()
