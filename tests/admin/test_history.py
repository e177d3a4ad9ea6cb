"""Staff see who did what in each object's admin history — the admin's own writes and the command line's."""

import io

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.urls import reverse

from accounts import audit, services
from tests.factories import DeveloperFactory

pytestmark = pytest.mark.django_db


def test_service_writes_made_without_a_person_show_as_the_system_user_in_the_history_page(staff_client, org):
    developer, _ = services.add_developer(organization=org, email="cli@acme.test")
    services.revoke_key(developer=developer)
    page = staff_client.get(reverse("admin:accounts_developer_history", args=[developer.pk]))
    body = page.content.decode()
    assert audit.SYSTEM_USERNAME in body
    assert "Revoked key" in body and "Added to Acme Corp" in body


def test_history_page_shows_the_staff_user_who_revoked(staff_client, developer):
    changelist = reverse("admin:accounts_developer_changelist")
    staff_client.post(changelist, {"action": "revoke_keys", "_selected_action": [str(developer.pk)], "post": "yes"})
    body = staff_client.get(reverse("admin:accounts_developer_history", args=[developer.pk])).content.decode()
    assert "boss" in body and f"Revoked key {developer.api_key_prefix}" in body


def test_each_admin_write_is_recorded_exactly_once(staff_client, org):
    developer = DeveloperFactory(organization=org)
    changelist = reverse("admin:accounts_developer_changelist")
    for action in ("deactivate", "activate"):
        staff_client.post(changelist, {"action": action, "_selected_action": [str(developer.pk)], "index": "0"})
    staff_client.post(changelist, {"action": "revoke_keys", "_selected_action": [str(developer.pk)], "post": "yes"})
    assert LogEntry.objects.filter(object_id=str(developer.pk)).count() == 3


def test_the_orgs_command_shows_in_the_admin_history_as_the_system_user(staff_client, org):
    call_command("orgs", "update-seats", str(org.pk), "7", stdout=io.StringIO())
    entry = LogEntry.objects.get(object_id=str(org.pk))
    assert entry.user.username == audit.SYSTEM_USERNAME and "Seats: 3 → 7." in entry.change_message
    body = staff_client.get(reverse("admin:accounts_organization_history", args=[org.pk])).content.decode()
    assert audit.SYSTEM_USERNAME in body and "Seats: 3 → 7." in body
