"""What owners and admins do to their own organization (accounts.services.members): the sign-up's organization,
invitations (roles, limits, mailed links stored hashed, single use), roles, deactivating and removing members, one's
own seat. Every write is in the admin history with the person who made it."""

from __future__ import annotations

import datetime
import hashlib
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from accounts import authentication, services
from accounts.choices import Role, SubscriptionStatus
from accounts.exceptions import (
    DuplicateEmail,
    InvalidInput,
    InvitationUnusable,
    KeyRefused,
    NotAllowed,
    SeatLimitReached,
    Throttled,
)
from accounts.models import Developer, Invitation, Organization
from infra import mailer
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory
from tests.support.threads import race

pytestmark = pytest.mark.django_db

LINK_RE = re.compile(r"https?://\S+/invitations/([A-Za-z0-9_-]+)/")


@pytest.fixture(autouse=True)
def _public_url(settings):
    settings.HOTCROSS_PUBLIC_URL = "https://hotcross.example"


@pytest.fixture
def actor(db) -> User:
    """The signed-in person's user, as the portal passes it."""
    return User.objects.create_user("signed-in", "signed-in@acme.test")


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme", max_seats=3)


@pytest.fixture
def owner(org):
    return DeveloperFactory(organization=org, email="owner@acme.test", role=Role.OWNER, api_key_hash=None)


@pytest.fixture
def admin(org):
    return DeveloperFactory(organization=org, email="admin@acme.test", role=Role.ADMIN, api_key_hash=None)


@pytest.fixture
def member(org):
    return DeveloperFactory(organization=org, email="member@acme.test")


@pytest.fixture
def plan(db):
    return PlanFactory(stripe_price_id="price_team", signup_min_seats=2, signup_max_seats=10, name="Team")


def last_entry(obj) -> LogEntry:
    return LogEntry.objects.filter(object_id=str(obj.pk)).latest("action_time", "id")


def mails() -> list:
    assert mailer.wait_idle(timeout=10)
    return list(mail.outbox)


def token_in(message) -> str:
    (token,) = LINK_RE.findall(message.body)
    return token


class TestStartOrganization:
    def test_makes_an_unpaid_organization_and_its_owner_without_a_key(self, plan, actor):
        org, owner = services.start_organization(
            owner_email=" Founder@Startup.test ", name=" Startup ", plan=plan, seats=3, actor=actor
        )
        assert (org.name, org.max_seats, org.plan, org.billing_email) == ("Startup", 3, plan, "founder@startup.test")
        assert org.subscription_status == SubscriptionStatus.INCOMPLETE
        assert (owner.email, owner.role, owner.holds_seat) == ("founder@startup.test", Role.OWNER, False)
        entry = last_entry(org)
        assert entry.user == actor and "Signed up by founder@startup.test" in entry.change_message

    def test_started_again_by_the_same_address_updates_the_same_organization(self, plan, actor):
        first, owner = services.start_organization(owner_email="f@startup.test", name="Startup", plan=plan, seats=2)
        bigger = PlanFactory(stripe_price_id="price_big", name="Big")
        again, same_owner = services.start_organization(
            owner_email="F@startup.test", name="Startup Ltd", plan=bigger, seats=5, actor=actor
        )
        assert again.pk == first.pk and same_owner.pk == owner.pk
        assert Organization.objects.filter(name__startswith="Startup").count() == 1
        again.refresh_from_db()
        assert (again.name, again.plan, again.max_seats) == ("Startup Ltd", bigger, 5)
        assert last_entry(again).user == actor

    def test_the_address_of_a_paying_organization_or_of_any_developer_is_refused(self, plan, owner, member):
        with pytest.raises(DuplicateEmail, match=re.escape("already belongs to Acme. Sign in instead")):
            services.start_organization(owner_email="owner@acme.test", name="Again", plan=plan, seats=2)
        with pytest.raises(DuplicateEmail):
            services.start_organization(owner_email="member@acme.test", name="Mine", plan=plan, seats=2)
        assert not Organization.objects.filter(name__in=["Again", "Mine"]).exists()

    def test_a_paid_sign_up_is_not_reopened(self, plan):
        org, _ = services.start_organization(owner_email="f@startup.test", name="Startup", plan=plan, seats=2)
        Organization.objects.filter(pk=org.pk).update(subscription_id="sub_1", subscription_status="active")
        with pytest.raises(DuplicateEmail):
            services.start_organization(owner_email="f@startup.test", name="Startup 2", plan=plan, seats=9)
        assert Organization.objects.get(pk=org.pk).max_seats == 2

    @pytest.mark.django_db(transaction=True)
    @pytest.mark.postgres_only
    def test_sign_ups_of_one_address_at_once_make_one_organization(self, plan):
        """Two tabs, a double submit: every request gets the same organization, none an error."""
        results = race(
            lambda i: services.start_organization(
                owner_email="f@startup.test", name=f"Startup {i}", plan=plan, seats=2 + i
            ),
            threads=8,
        )
        assert all(isinstance(r, tuple) for r in results), results
        (org,) = Organization.objects.filter(billing_email="f@startup.test")
        assert {r[0].pk for r in results} == {org.pk}
        assert Developer.objects.get(email="f@startup.test").organization_id == org.pk

    @pytest.mark.parametrize("seats", [1, 11, 0, -1, "3", 2.5])
    def test_seats_outside_the_plans_bounds_are_refused(self, plan, seats):
        with pytest.raises(InvalidInput, match="sold with 2 to 10 seats"):
            services.start_organization(owner_email="f@startup.test", name="Startup", plan=plan, seats=seats)
        assert not Developer.objects.filter(email="f@startup.test").exists()

    def test_a_plan_not_sold_and_a_blank_name_are_refused(self, plan):
        unsold = PlanFactory(stripe_price_id="", name="Internal")
        with pytest.raises(InvalidInput, match=re.escape("The plan Internal is not offered at sign-up.")):
            services.start_organization(owner_email="f@startup.test", name="Startup", plan=unsold, seats=2)
        with pytest.raises(InvalidInput, match="organization's name"):
            services.start_organization(owner_email="f@startup.test", name="  ", plan=plan, seats=2)
        assert not Developer.objects.filter(email="f@startup.test").exists()
        assert services.signup_plans() == [plan]


class TestInvite:
    def test_mails_a_working_link_and_keeps_only_the_tokens_hash(
        self, owner, actor, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            invitation, token = services.invite(by=owner, email=" New@Acme.test ", role=Role.ADMIN, actor=actor)
        (message,) = mails()
        assert message.to == ["new@acme.test"]
        assert message.subject == "owner@acme.test invites you to Acme on Hotcross"
        assert "as admin" in message.body and "https://hotcross.example/invitations/" in message.body
        assert token_in(message) == token
        assert services.invitation_for(token).pk == invitation.pk
        stored = Invitation.objects.filter(pk=invitation.pk).values()[0]
        assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
        assert token not in [str(value) for value in stored.values()]
        assert (stored["email"], stored["role"], stored["invited_by_id"]) == ("new@acme.test", "admin", owner.pk)
        entry = last_entry(owner.organization)
        assert entry.user == actor and entry.change_message == "Invited new@acme.test as admin (by owner@acme.test)."

    def test_members_always_come_with_a_seat(self, owner):
        invitation, _ = services.invite(by=owner, email="m@acme.test", role=Role.MEMBER, with_seat=False)
        assert invitation.with_seat is True
        admin_invitation, _ = services.invite(by=owner, email="a@acme.test", role=Role.ADMIN, with_seat=False)
        assert admin_invitation.with_seat is False

    def test_who_may_invite_whom(self, owner, admin, member):
        with pytest.raises(NotAllowed, match=re.escape("Only an owner can invite another owner.")):
            services.invite(by=admin, email="boss@acme.test", role=Role.OWNER)
        with pytest.raises(NotAllowed):
            services.invite(by=member, email="friend@acme.test")
        services.invite(by=admin, email="colleague@acme.test", role=Role.ADMIN)
        services.invite(by=owner, email="co-owner@acme.test", role=Role.OWNER)
        inactive_owner = DeveloperFactory(organization=owner.organization, role=Role.OWNER, is_active=False)
        with pytest.raises(NotAllowed):
            services.invite(by=inactive_owner, email="late@acme.test")
        assert set(Invitation.objects.values_list("email", flat=True)) == {"colleague@acme.test", "co-owner@acme.test"}

    def test_bad_input_changes_nothing(self, owner):
        with pytest.raises(InvalidInput, match="is not a role"):
            services.invite(by=owner, email="x@acme.test", role="emperor")
        with pytest.raises(InvalidInput, match="is not an email address"):
            services.invite(by=owner, email="not an address")
        assert not Invitation.objects.exists()

    def test_an_address_already_a_developer_anywhere_or_already_invited_is_refused(self, owner, member):
        other = DeveloperFactory(email="elsewhere@other.test")
        with pytest.raises(DuplicateEmail, match="already a developer of your organization"):
            services.invite(by=owner, email="MEMBER@acme.test")
        with pytest.raises(DuplicateEmail, match="another organization"):
            services.invite(by=owner, email=other.email)
        services.invite(by=owner, email="once@acme.test")
        with pytest.raises(InvalidInput, match="already has an invitation waiting: resend it or revoke it"):
            services.invite(by=owner, email="Once@acme.test")
        assert Invitation.objects.count() == 1

    def test_limited_per_invited_address(self, owner, settings):
        settings.HOTCROSS_INVITATIONS_PER_ADDRESS_PER_HOUR = 2
        invitation, _ = services.invite(by=owner, email="target@acme.test")
        services.resend_invitation(by=owner, invitation=invitation)
        with pytest.raises(Throttled) as refused:
            services.resend_invitation(by=owner, invitation=invitation)
        assert 3500 <= refused.value.retry_after <= 3600
        assert "Too many invitations were sent to this address. Try again in 60 minutes." == str(refused.value)
        invitation.refresh_from_db()
        assert invitation.sends == 2

    def test_limited_per_client_address(self, owner, settings):
        settings.HOTCROSS_INVITATIONS_PER_CLIENT_PER_HOUR = 2
        services.invite(by=owner, email="a@acme.test", client_ip="203.0.113.5")
        services.invite(by=owner, email="b@acme.test", client_ip="203.0.113.5")
        with pytest.raises(Throttled, match="from your network") as refused:
            services.invite(by=owner, email="c@acme.test", client_ip="203.0.113.5")
        assert refused.value.retry_after > 0
        services.invite(by=owner, email="c@acme.test", client_ip="198.51.100.7")  # another network
        assert Invitation.objects.count() == 3


class TestResendAndRevoke:
    def test_resend_mails_a_new_token_and_the_old_one_stops_working(
        self, owner, actor, django_capture_on_commit_callbacks
    ):
        invitation, old = services.invite(by=owner, email="new@acme.test")
        with django_capture_on_commit_callbacks(execute=True):
            new = services.resend_invitation(by=owner, invitation=invitation, actor=actor)
        assert new != old and token_in(mails()[-1]) == new
        with pytest.raises(InvitationUnusable, match="not valid: it may have been replaced by a newer mail"):
            services.invitation_for(old)
        assert services.invitation_for(new).sends == 2
        assert last_entry(owner.organization).user == actor

    def test_resend_of_an_accepted_or_revoked_invitation_is_refused(self, owner):
        invitation, _token = services.invite(by=owner, email="new@acme.test")
        services.revoke_invitation(by=owner, invitation=invitation)
        invitation.refresh_from_db()
        with pytest.raises(InvalidInput, match="is revoked: invite again instead"):
            services.resend_invitation(by=owner, invitation=invitation)

    def test_an_admin_cannot_resend_an_owners_invitation(self, owner, admin):
        invitation, token = services.invite(by=owner, email="co-owner@acme.test", role=Role.OWNER)
        with pytest.raises(NotAllowed):
            services.resend_invitation(by=admin, invitation=invitation)
        assert services.invitation_for(token).pk == invitation.pk

    def test_revoke_once_and_the_link_stops_working(self, owner, admin, actor):
        invitation, token = services.invite(by=owner, email="new@acme.test")
        assert services.revoke_invitation(by=admin, invitation=invitation, actor=actor) is True
        assert services.revoke_invitation(by=admin, invitation=invitation, actor=actor) is False
        with pytest.raises(InvitationUnusable, match="was revoked"):
            services.invitation_for(token)
        entry = last_entry(owner.organization)
        assert entry.user == actor and entry.change_message == "Revoked the invitation of new@acme.test."

    def test_nobody_acts_on_another_organizations_invitations(self, owner):
        invitation, token = services.invite(by=owner, email="new@acme.test")
        stranger = DeveloperFactory(role=Role.OWNER)
        with pytest.raises(NotAllowed, match="your own organization"):
            services.revoke_invitation(by=stranger, invitation=invitation)
        with pytest.raises(NotAllowed):
            services.resend_invitation(by=stranger, invitation=invitation)
        assert services.invitation_for(token).pk == invitation.pk


class TestAccept:
    def test_the_invitee_joins_with_the_role_and_a_key_shown_once(self, owner, actor):
        invitation, token = services.invite(by=owner, email="new@acme.test", role=Role.MEMBER)
        developer, plain_key = services.accept_invitation(token=token, email="NEW@acme.test", actor=actor)
        assert (developer.email, developer.role, developer.organization_id) == (
            "new@acme.test",
            Role.MEMBER,
            owner.organization_id,
        )
        assert authentication.authenticate_key(plain_key).developer_id == developer.pk
        invitation.refresh_from_db()
        assert invitation.state == "accepted" and invitation.accepted_by == developer
        assert last_entry(owner.organization).user == actor
        assert last_entry(developer).user == actor

    def test_an_admin_invited_without_a_seat_needs_none(self, owner, member):
        Organization.objects.filter(pk=owner.organization_id).update(max_seats=1)  # the member holds it
        _invitation, token = services.invite(by=owner, email="boss@acme.test", role=Role.ADMIN, with_seat=False)
        developer, plain_key = services.accept_invitation(token=token, email="boss@acme.test")
        assert plain_key == "" and not developer.holds_seat and developer.role == Role.ADMIN

    def test_the_token_works_once(self, owner):
        _, token = services.invite(by=owner, email="new@acme.test")
        services.accept_invitation(token=token, email="new@acme.test")
        with pytest.raises(InvitationUnusable, match=re.escape("already been used. Sign in instead.")):
            services.accept_invitation(token=token, email="new@acme.test")
        assert Developer.objects.filter(email="new@acme.test").count() == 1

    def test_expired_revoked_unknown_and_other_address_are_refused(self, owner):
        expired, expired_token = services.invite(by=owner, email="late@acme.test")
        Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
        with pytest.raises(InvitationUnusable, match="has expired"):
            services.accept_invitation(token=expired_token, email="late@acme.test")
        revoked, revoked_token = services.invite(by=owner, email="gone@acme.test")
        services.revoke_invitation(by=owner, invitation=revoked)
        with pytest.raises(InvitationUnusable, match="was revoked"):
            services.accept_invitation(token=revoked_token, email="gone@acme.test")
        for token in ("", "x" * 500, "not-a-token"):
            with pytest.raises(InvitationUnusable, match="not valid"):
                services.accept_invitation(token=token, email="late@acme.test")
        _, token = services.invite(by=owner, email="right@acme.test")
        with pytest.raises(InvitationUnusable, match=re.escape("This invitation is for right@acme.test")):
            services.accept_invitation(token=token, email="wrong@acme.test")
        assert not Developer.objects.filter(email__in=["late@acme.test", "gone@acme.test", "wrong@acme.test"])
        assert services.invitation_for(token).state == "pending"

    def test_a_member_needs_a_free_seat_and_the_invitation_stays_usable(self, owner, member):
        Organization.objects.filter(pk=owner.organization_id).update(max_seats=1)
        _invitation, token = services.invite(by=owner, email="new@acme.test")
        with pytest.raises(SeatLimitReached):
            services.accept_invitation(token=token, email="new@acme.test")
        assert not Developer.objects.filter(email="new@acme.test").exists()
        assert services.invitation_for(token).state == "pending"
        services.set_seats(organization=owner.organization, max_seats=2)
        developer, plain_key = services.accept_invitation(token=token, email="new@acme.test")
        assert developer.holds_seat and plain_key

    @pytest.mark.django_db(transaction=True)
    @pytest.mark.postgres_only
    def test_two_accepts_at_once_make_one_developer(self):
        org = OrganizationFactory(max_seats=5)
        owner = DeveloperFactory(organization=org, role=Role.OWNER, api_key_hash=None)
        _, token = services.invite(by=owner, email="twice@acme.test")
        results = race(lambda _: services.accept_invitation(token=token, email="twice@acme.test"), threads=8)
        assert sum(isinstance(r, tuple) for r in results) == 1
        assert all(isinstance(r, InvitationUnusable) for r in results if not isinstance(r, tuple)), results
        assert Developer.objects.filter(email="twice@acme.test").count() == 1


class TestRolesAndMembers:
    def test_an_owner_changes_roles_with_history(self, owner, member, actor):
        services.change_role(by=owner, member=member, role=Role.ADMIN, actor=actor)
        assert Developer.objects.get(pk=member.pk).role == Role.ADMIN
        entry = last_entry(member)
        assert entry.user == actor
        assert entry.change_message == "Role changed from member to admin (by owner@acme.test)."
        assert services.change_role(by=owner, member=member, role=Role.ADMIN) is member  # no change, no entry
        assert last_entry(member).pk == entry.pk

    def test_an_admin_cannot_act_on_an_owner_nor_make_one(self, owner, admin, member):
        for act in (
            lambda: services.change_role(by=admin, member=owner, role=Role.MEMBER),
            lambda: services.change_role(by=admin, member=member, role=Role.OWNER),
            lambda: services.deactivate_member(by=admin, member=owner),
            lambda: services.remove_member(by=admin, member=owner),
        ):
            with pytest.raises(NotAllowed):
                act()
        owner.refresh_from_db()
        assert owner.role == Role.OWNER and owner.is_active
        services.change_role(by=admin, member=member, role=Role.ADMIN)  # but on others they may
        assert Developer.objects.get(pk=member.pk).role == Role.ADMIN

    def test_members_and_strangers_manage_nothing(self, owner, member):
        stranger = DeveloperFactory(role=Role.OWNER)
        for by in (member, stranger):
            with pytest.raises(NotAllowed):
                services.deactivate_member(by=by, member=owner)
            with pytest.raises(NotAllowed):
                services.change_role(by=by, member=member, role=Role.ADMIN)
        assert Developer.objects.get(pk=member.pk).role == Role.MEMBER

    def test_the_last_owner_cannot_be_demoted_removed_or_deactivated(self, owner):
        for act in (
            lambda: services.change_role(by=owner, member=owner, role=Role.ADMIN),
            lambda: services.deactivate_member(by=owner, member=owner),
            lambda: services.remove_member(by=owner, member=owner),
        ):
            with pytest.raises(NotAllowed, match="is the last owner of the organization"):
                act()
        owner.refresh_from_db()
        assert owner.role == Role.OWNER and owner.is_active
        # an inactive owner does not count
        DeveloperFactory(organization=owner.organization, role=Role.OWNER, is_active=False)
        with pytest.raises(NotAllowed):
            services.change_role(by=owner, member=owner, role=Role.MEMBER)

    def test_with_another_owner_an_owner_may_step_down(self, owner, actor):
        second = DeveloperFactory(organization=owner.organization, role=Role.OWNER, email="second@acme.test")
        services.change_role(by=second, member=owner, role=Role.ADMIN, actor=actor)
        assert Developer.objects.get(pk=owner.pk).role == Role.ADMIN
        with pytest.raises(NotAllowed):
            services.remove_member(by=second, member=second)

    def test_deactivate_frees_the_seat_with_history(self, owner, member, actor):
        assert services.deactivate_member(by=owner, member=member, actor=actor) is True
        member.refresh_from_db()
        assert not member.is_active and not member.holds_seat
        assert last_entry(member).user == actor
        assert services.deactivate_member(by=owner, member=member) is False

    def test_remove_revokes_the_key_and_deactivates_with_history(self, owner, member, actor):
        key = member.plain_key
        assert services.remove_member(by=owner, member=member, actor=actor) is True
        member.refresh_from_db()
        assert not member.is_active and member.api_key_revoked_at is not None
        entry = last_entry(member)
        assert entry.user == actor and entry.change_message == "Removed from the organization (by owner@acme.test)."
        with pytest.raises(KeyRefused):
            authentication.authenticate_key(key)
        assert services.remove_member(by=owner, member=member) is False

    def test_bad_role_is_refused(self, owner, member):
        with pytest.raises(InvalidInput):
            services.change_role(by=owner, member=member, role="boss")


class TestOwnSeat:
    def test_an_owner_takes_a_seat_and_gives_it_up(self, owner, actor):
        plain_key = services.take_seat(developer=owner, actor=actor)
        assert authentication.authenticate_key(plain_key).developer_id == owner.pk
        assert last_entry(owner).user == actor
        with pytest.raises(InvalidInput, match="already hold a seat"):
            services.take_seat(developer=owner)
        assert services.give_up_seat(developer=owner, actor=actor) is True
        owner.refresh_from_db()
        assert not owner.holds_seat and last_entry(owner).user == actor

    def test_taking_a_seat_needs_a_free_one(self, owner):
        Organization.objects.filter(pk=owner.organization_id).update(max_seats=1)
        DeveloperFactory(organization=owner.organization)
        with pytest.raises(SeatLimitReached):
            services.take_seat(developer=owner)
        owner.refresh_from_db()
        assert not owner.holds_seat

    def test_a_member_cannot_give_up_their_seat(self, member):
        with pytest.raises(NotAllowed, match="an owner or admin can remove you instead"):
            services.give_up_seat(developer=member)
        member.refresh_from_db()
        assert member.holds_seat


class TestStaffPaths:
    def test_set_role_keeps_the_last_owner_and_records_the_staff_user(self, owner, member, actor):
        with pytest.raises(NotAllowed, match="last owner"):
            services.set_role(developer=owner, role=Role.MEMBER, actor=actor)
        with pytest.raises(InvalidInput):
            services.set_role(developer=member, role="boss")
        services.set_role(developer=member, role=Role.OWNER, actor=actor)
        assert last_entry(member).change_message == "Role changed from member to owner by staff."
        services.set_role(developer=owner, role=Role.MEMBER, actor=actor)  # another owner now
        assert Developer.objects.get(pk=owner.pk).role == Role.MEMBER

    def test_staff_revoke_an_invitation(self, owner, actor):
        invitation, token = services.invite(by=owner, email="new@acme.test")
        assert services.staff_revoke_invitation(invitation=invitation, actor=actor) is True
        assert services.staff_revoke_invitation(invitation=invitation, actor=actor) is False
        with pytest.raises(InvitationUnusable):
            services.invitation_for(token)
        assert last_entry(owner.organization).user == actor
