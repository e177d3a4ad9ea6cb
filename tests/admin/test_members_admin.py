"""Memberships in the staff admin (issue 30): developers' roles (list, filter, the one field staff edit in place,
through `services.set_role`), the invitations list (read-only but for "revoke", never the token's hash), the alerts
sent, and both on the organization page."""

import datetime

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.choices import AlertKind, Role
from accounts.exceptions import InvitationUnusable
from accounts.models import AlertSent, Developer, Invitation
from tests.factories import DeveloperFactory, OrganizationFactory

pytestmark = pytest.mark.django_db

DEV_LIST = reverse("admin:accounts_developer_changelist")
INVITATIONS = reverse("admin:accounts_invitation_changelist")
ALERTS = reverse("admin:accounts_alertsent_changelist")


def developer_page(developer) -> str:
    return reverse("admin:accounts_developer_change", args=[developer.pk])


def org_page(org) -> str:
    return reverse("admin:accounts_organization_change", args=[org.pk])


def history(obj) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=str(obj.pk)).order_by("action_time", "id"))


@pytest.fixture
def owner(org):
    return DeveloperFactory(organization=org, email="owner@acme.test", role=Role.OWNER)


@pytest.fixture
def invitations(owner):
    """A pending invitation (with its token), an accepted one, a revoked one and an expired one."""
    pending, token = services.invite(by=owner, email="pending@acme.test", role=Role.ADMIN)
    accepted, accepted_token = services.invite(by=owner, email="joined@acme.test")
    services.accept_invitation(token=accepted_token, email="joined@acme.test")
    revoked, _ = services.invite(by=owner, email="revoked@acme.test")
    services.revoke_invitation(by=owner, invitation=revoked)
    expired, _ = services.invite(by=owner, email="expired@acme.test")
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - datetime.timedelta(hours=1))
    return {"pending": (pending, token), "accepted": accepted, "revoked": revoked, "expired": expired}


class TestRoles:
    def test_the_list_shows_and_filters_roles(self, staff_client, owner, developer):
        body = staff_client.get(DEV_LIST).content.decode()
        assert "Role" in body and "Owner" in body and "Member" in body
        owners = staff_client.get(DEV_LIST + "?role__exact=owner").content.decode()
        assert "owner@acme.test" in owners and "ada@acme.test" not in owners

    def test_staff_change_a_role_on_the_page_through_the_service_with_history(self, staff_client, owner, developer):
        page = staff_client.get(developer_page(developer)).content.decode()
        assert 'name="role"' in page and 'name="_save"' in page
        assert 'name="email"' not in page and 'name="is_active"' not in page  # the rest stays read-only

        response = staff_client.post(developer_page(developer), {"role": "admin", "_save": "Save"})

        assert response.status_code == 302
        assert Developer.objects.get(pk=developer.pk).role == Role.ADMIN
        (entry,) = [e for e in history(developer) if "Role changed" in e.change_message]
        assert entry.user.username == "boss"
        assert entry.change_message == "Role changed from member to admin by staff."

    def test_the_last_owner_cannot_be_demoted_and_the_page_says_why(self, staff_client, owner):
        response = staff_client.post(developer_page(owner), {"role": "member", "_save": "Save"}, follow=True)

        assert Developer.objects.get(pk=owner.pk).role == Role.OWNER
        assert "is the last owner of the organization: make someone else an owner first." in response.content.decode()
        assert not [e for e in history(owner) if "Role changed" in e.change_message]

    def test_with_another_owner_an_owner_can_be_demoted(self, staff_client, org, owner):
        DeveloperFactory(organization=org, role=Role.OWNER)
        staff_client.post(developer_page(owner), {"role": "member", "_save": "Save"})
        assert Developer.objects.get(pk=owner.pk).role == Role.MEMBER

    def test_a_role_that_does_not_exist_is_a_form_error(self, staff_client, developer):
        response = staff_client.post(developer_page(developer), {"role": "emperor", "_save": "Save"})
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
        assert Developer.objects.get(pk=developer.pk).role == Role.MEMBER

    def test_support_sees_roles_but_cannot_change_them(self, support_client, developer):
        page = support_client.get(developer_page(developer)).content.decode()
        assert "Member" in page and 'name="role"' not in page and 'name="_save"' not in page
        assert support_client.post(developer_page(developer), {"role": "owner", "_save": "Save"}).status_code == 403
        assert Developer.objects.get(pk=developer.pk).role == Role.MEMBER

    def test_staff_with_change_rights_only_change_roles(self, client, make_staff, developer):
        client.force_login(make_staff("view_developer", "change_developer"))
        client.post(developer_page(developer), {"role": "admin", "_save": "Save"})
        assert Developer.objects.get(pk=developer.pk).role == Role.ADMIN

    def test_the_organization_page_lists_roles(self, staff_client, org, owner, developer):
        body = staff_client.get(org_page(org)).content.decode()
        assert "field-role" in body and "Owner" in body


class TestInvitations:
    def test_the_list_shows_each_invitation_and_never_a_token_or_its_hash(self, staff_client, invitations):
        pending, token = invitations["pending"]
        body = staff_client.get(INVITATIONS).content.decode()
        for text in ("pending@acme.test", "Acme Corp", "Admin", "owner@acme.test", "pending", "accepted", "revoked"):
            assert text in body
        page = staff_client.get(reverse("admin:accounts_invitation_change", args=[pending.pk])).content.decode()
        for shown in (body, page):
            assert token not in shown and pending.token_hash not in shown
        assert "token hash" not in page.lower()
        assert 'name="_save"' not in page and 'name="email"' not in page

    @pytest.mark.parametrize(
        ("state", "email"),
        [
            ("pending", "pending@acme.test"),
            ("accepted", "joined@acme.test"),
            ("revoked", "revoked@acme.test"),
            ("expired", "expired@acme.test"),
        ],
    )
    def test_the_state_filter(self, staff_client, invitations, state, email):
        body = staff_client.get(INVITATIONS + f"?state={state}").content.decode()
        listed = {i.email for i in Invitation.objects.all() if i.email in body}
        assert listed == {email}

    def test_filters_and_lookups_not_offered_are_refused(self, staff_client, invitations):
        assert staff_client.get(INVITATIONS + "?token_hash__startswith=a").status_code == 400
        org = invitations["accepted"].organization
        assert staff_client.get(INVITATIONS + f"?organization__id__exact={org.pk}").status_code == 200

    def test_revoke_action_revokes_pending_ones_only_with_history(self, staff_client, invitations, org):
        pending, token = invitations["pending"]
        accepted = invitations["accepted"]
        response = staff_client.post(
            INVITATIONS,
            {"action": "revoke", "_selected_action": [str(pending.pk), str(accepted.pk)], "index": "0"},
            follow=True,
        )
        body = response.content.decode()
        assert "Revoked 1 invitation." in body and "1 already accepted or revoked" in body
        assert Invitation.objects.get(pk=pending.pk).state == "revoked"
        assert Invitation.objects.get(pk=accepted.pk).state == "accepted"
        with pytest.raises(InvitationUnusable):
            services.invitation_for(token)
        entry = history(org)[-1]
        assert entry.user.username == "boss"
        assert entry.change_message == "Revoked the invitation of pending@acme.test (staff)."

    def test_nobody_adds_edits_or_deletes_invitations_here(self, staff_client, invitations):
        pending, token = invitations["pending"]
        assert staff_client.get(reverse("admin:accounts_invitation_add")).status_code == 403
        url = reverse("admin:accounts_invitation_change", args=[pending.pk])
        staff_client.post(url, {"email": "else@acme.test", "role": "owner", "_save": "Save"})
        pending.refresh_from_db()
        assert (pending.email, pending.role) == ("pending@acme.test", Role.ADMIN)
        assert staff_client.get(reverse("admin:accounts_invitation_delete", args=[pending.pk])).status_code == 403
        assert services.invitation_for(token).pk == pending.pk

    def test_support_sees_invitations_and_revokes_them_but_changes_nothing_else(self, support_client, invitations):
        pending, token = invitations["pending"]
        assert "pending@acme.test" in support_client.get(INVITATIONS).content.decode()
        url = reverse("admin:accounts_invitation_change", args=[pending.pk])
        page = support_client.get(url).content.decode()
        assert "pending@acme.test" in page and 'name="_save"' not in page and pending.token_hash not in page
        support_client.post(url, {"email": "else@acme.test", "role": "owner", "_save": "Save"})
        assert support_client.get(reverse("admin:accounts_invitation_delete", args=[pending.pk])).status_code == 403
        assert (Invitation.objects.get(pk=pending.pk).email, Invitation.objects.get(pk=pending.pk).role) == (
            "pending@acme.test",
            Role.ADMIN,
        )

        support_client.post(INVITATIONS, {"action": "revoke", "_selected_action": [str(pending.pk)], "index": "0"})

        assert Invitation.objects.get(pk=pending.pk).state == "revoked"
        with pytest.raises(InvitationUnusable):
            services.invitation_for(token)


class TestOrganizationPage:
    def test_lists_invitations_and_alerts_sent_with_links_to_their_lists(self, staff_client, org, invitations):
        AlertSent.objects.create(organization=org, kind=AlertKind.CAP_80, period="2026-12", recipients=2)
        body = staff_client.get(org_page(org)).content.decode()
        assert 'id="invitations"' in body and "pending@acme.test" in body and "expired@acme.test" in body
        assert f"{INVITATIONS}?organization__id__exact={org.pk}" in body
        assert 'id="alerts-sent"' in body and "80 % of the monthly cap" in body and "2026-12" in body
        assert f"{ALERTS}?organization__id__exact={org.pk}" in body
        assert invitations["pending"][0].token_hash not in body

    def test_an_organization_with_neither_says_so(self, staff_client, org):
        body = staff_client.get(org_page(org)).content.decode()
        assert "No invitation sent." in body and "No alert sent." in body

    def test_staff_without_the_rights_see_neither_section(self, client, make_staff, org, invitations):
        client.force_login(make_staff("view_organization"))
        body = client.get(org_page(org)).content.decode()
        assert 'id="invitations"' not in body and 'id="alerts-sent"' not in body

    def test_support_sees_both_sections(self, support_client, org, invitations):
        AlertSent.objects.create(organization=org, kind=AlertKind.PAST_DUE, period="2026-12-07", recipients=1)
        body = support_client.get(org_page(org)).content.decode()
        assert 'id="invitations"' in body and "pending@acme.test" in body
        assert 'id="alerts-sent"' in body and "a payment failed (past due)" in body
        assert support_client.get(ALERTS).status_code == 200

    def test_the_sections_cost_the_same_queries_whatever_their_size(self, staff_client, org, owner):
        def queries() -> int:
            with CaptureQueriesContext(connection) as captured:
                assert staff_client.get(org_page(org)).status_code == 200
            return len(captured)

        services.invite(by=owner, email="first@acme.test")
        AlertSent.objects.create(organization=org, kind=AlertKind.PAST_DUE, period="2026-12-01")
        queries()  # warm per-process caches
        few = queries()
        for i in range(60):
            Invitation.objects.create(
                organization=org,
                email=f"many{i}@acme.test",
                token_hash=f"{i:064d}",
                invited_by=owner,
                expires_at=timezone.now() + datetime.timedelta(days=1),
            )
            AlertSent.objects.create(organization=org, kind=AlertKind.SEATS_SHORT, period=f"2026-11-{i:02d}")
        assert queries() == few
        assert staff_client.get(org_page(org)).content.decode().count("many") == 50


class TestAlertsList:
    def test_read_only_list_of_alerts(self, staff_client, org):
        alert = AlertSent.objects.create(organization=org, kind=AlertKind.PAST_DUE, period="2026-12-07", recipients=1)
        body = staff_client.get(ALERTS).content.decode()
        assert "Acme Corp" in body and "a payment failed (past due)" in body
        assert staff_client.get(ALERTS + "?kind__exact=past_due").status_code == 200
        assert staff_client.get(reverse("admin:accounts_alertsent_add")).status_code == 403
        page = staff_client.get(reverse("admin:accounts_alertsent_change", args=[alert.pk])).content.decode()
        assert 'name="_save"' not in page

    def test_other_organizations_are_not_mixed_in(self, staff_client, org):
        other = OrganizationFactory(name="Other Inc")
        AlertSent.objects.create(organization=other, kind=AlertKind.CAP_100, period="2026-12")
        body = staff_client.get(org_page(org)).content.decode()
        assert "the monthly cap reached" not in body


def test_registry_and_dashboard_still_work(staff_client):
    assert staff_client.get(reverse("admin:index")).status_code == 200
    assert User.objects.filter(username="boss").exists()
