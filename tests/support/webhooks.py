"""Helpers of the Stripe webhook tests (`tests/billing/test_webhook_*.py`): an organization's admin history, its row
read again, seat holders in seat order, and what the key check answers."""

from __future__ import annotations

import datetime

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from accounts.authentication import authenticate_key
from accounts.exceptions import KeyRefused
from accounts.models import Organization
from tests.factories import DeveloperFactory


def history(org: Organization) -> list[str]:
    ct = ContentType.objects.get_for_model(Organization)
    return list(
        LogEntry.objects.filter(content_type=ct, object_id=str(org.pk))
        .order_by("pk")
        .values_list("change_message", flat=True)
    )


def refresh(org: Organization) -> Organization:
    org.refresh_from_db()
    return org


def developers(org: Organization, n: int) -> list:
    """n seat holders, claimed one after the other (the first keeps access longest)."""
    start = timezone.now() - datetime.timedelta(hours=1)
    return [DeveloperFactory(organization=org, seat_claimed_at=start + datetime.timedelta(seconds=i)) for i in range(n)]


def refusal(key: str) -> str | None:
    try:
        authenticate_key(key)
    except KeyRefused as exc:
        return exc.code
    return None
