"""What customer owners and admins do to their own organization without staff (issue 30): start an organization at
sign-up, invite people (mailed links: single-use, expiring, stored hashed), accept, resend and revoke invitations,
change roles, remove members, take or give up one's own seat.

Who may do what (`require_manager`, `_require_may_change`), once:
- owners and admins manage members, invitations and keys of their own organization, nobody else's;
- only owners make or unmake owners, and act on other owners;
- the last active owner cannot leave, be removed, deactivated or demoted;
- an owner or admin holds a seat only if they choose to (a key in use); members always get a key.

Every write takes the organization's row lock where seats are involved (the same `_require_free_seat` as staff) and is
recorded in the admin history with the person who did it (`actor`: their signed-in user), so the organization's
history shows owners' actions beside staff's.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts import audit, throttle
from accounts.choices import MANAGING_ROLES, MAX_SEATS, Role, SubscriptionStatus
from accounts.exceptions import DuplicateEmail, InvalidInput, InvitationUnusable, NotAllowed
from accounts.models import Developer, Invitation, Organization, Plan
from accounts.services._base import keys_changed, lock_organization, validate
from accounts.services.developers import (
    activate_developer,
    add_developer,
    deactivate_developer,
    normalize_email,
    revoke_key,
    rotate_key,
)
from accounts.services.organizations import create_organization
from infra import mailer

logger = logging.getLogger(__name__)

TOKEN_BYTES = 32
SIGNUP_TRIES = 3  # a sign-up that lost its owner's address to a concurrent one tries again (`start_organization`)


# --- sign-up ----------------------------------------------------------------------------------------------------------


def signup_seat_bounds(plan: Plan) -> tuple[int, int]:
    """The seats a sign-up may buy on this plan: (fewest, most)."""
    low = max(1, plan.signup_min_seats or 1)
    high = min(MAX_SEATS, plan.signup_max_seats) if plan.signup_max_seats else MAX_SEATS
    return low, max(low, high)


def signup_plans() -> list[Plan]:
    """The plans offered at sign-up: those with a Stripe seat price."""
    return list(Plan.objects.exclude(stripe_price_id="").order_by("name", "code"))


def start_organization(
    *, owner_email: str, name: str, plan: Plan, seats: int, develops: bool = False, actor: Any = None
) -> tuple[Organization, Developer]:
    """The organization a sign-up makes (status incomplete until Stripe says it is paid) and its owner.

    Idempotent per owner address: a sign-up started again (a reload, a retry, back from Checkout to change the seats)
    by an owner whose organization was never paid updates that organization instead of making a second one. An
    address that already belongs to a paying organization, or to a developer of any other, is refused
    (`DuplicateEmail`): they sign in instead. `develops`: the owner also develops, so gets a key (a seat) once paid.
    """
    email = normalize_email(owner_email)
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Enter your organization's name.")
    if not plan.stripe_price_id:
        raise InvalidInput(f"The plan {plan.name} is not offered at sign-up.")
    low, high = signup_seat_bounds(plan)
    if not isinstance(seats, int) or not low <= seats <= high:
        raise InvalidInput(f"The plan {plan.name} is sold with {low} to {high} seats, not {seats}.")
    for _ in range(SIGNUP_TRIES):
        try:
            return _start_or_change(email=email, name=name, plan=plan, seats=seats, develops=develops, actor=actor)
        except _SignUpRace:
            # Another request for the same address made its organization between our look-up and our insert (two
            # tabs, a double submit): ours is rolled back, and the next try finds theirs and changes it like any
            # restart.
            continue
    raise DuplicateEmail(f"The address {email} is being signed up by another request. Try again in a moment.")


class _SignUpRace(Exception):
    """The owner's address was taken by a concurrent sign-up while ours was being made."""


def _start_or_change(
    *, email: str, name: str, plan: Plan, seats: int, develops: bool, actor: Any
) -> tuple[Organization, Developer]:
    with transaction.atomic():
        existing = Developer.objects.select_related("organization").filter(email__iexact=email).first()
        if existing is not None:
            organization = existing.organization
            if not _unpaid_signup(existing):
                raise DuplicateEmail(
                    f"The address {email} already belongs to {organization.name}. Sign in instead, or sign up with "
                    "another address."
                )
            locked = lock_organization(organization)
            locked.name, locked.plan, locked.max_seats = name, plan, seats
            validate(locked)
            locked.save(update_fields=["name", "plan", "max_seats", "updated_at"])
            audit.record(
                actor=actor,
                obj=locked,
                message=f"Sign-up changed: {name}, plan {plan.code}, {seats} seat(s).",
            )
            return locked, existing
        organization = create_organization(
            name=name,
            max_seats=seats,
            subscription_status=SubscriptionStatus.INCOMPLETE,
            billing_email=email,
            actor=actor,
        )
        Organization.objects.filter(pk=organization.pk).update(plan=plan)
        organization.plan = plan
        try:
            owner, _ = add_developer(
                organization=organization, email=email, role=Role.OWNER, with_key=False, actor=actor
            )
        except DuplicateEmail:
            raise _SignUpRace from None  # leaves the atomic block: this organization is rolled back
        audit.record(
            actor=actor,
            obj=organization,
            message=f"Signed up by {email} (owner{', who develops' if develops else ''}): plan {plan.code}, "
            f"{seats} seat(s), waiting for payment.",
        )
    logger.info("organization signed up id=%s plan=%s seats=%s", organization.pk, plan.code, seats)
    return organization, owner


def _unpaid_signup(developer: Developer) -> bool:
    organization = developer.organization
    return (
        developer.role == Role.OWNER
        and not organization.subscription_id
        and organization.subscription_status in (SubscriptionStatus.INCOMPLETE, SubscriptionStatus.INCOMPLETE_EXPIRED)
    )


# --- who may do what --------------------------------------------------------------------------------------------------


def require_manager(by: Developer, organization: Organization | None = None) -> None:
    """`by` is an active owner or admin (of `organization`, when given); `NotAllowed` otherwise."""
    if not by.is_active or by.role not in MANAGING_ROLES:
        raise NotAllowed("Only the organization's owners and admins can do this.")
    if organization is not None and by.organization_id != organization.pk:
        raise NotAllowed("You can only manage your own organization.")


def _require_may_change(by: Developer, member: Developer) -> None:
    require_manager(by)
    if member.organization_id != by.organization_id:
        raise NotAllowed("You can only manage your own organization.")
    if member.role == Role.OWNER and by.role != Role.OWNER:
        raise NotAllowed("Only an owner can change another owner.")


def _require_role(role: str) -> None:
    if role not in Role.values:
        raise InvalidInput(f"'{role}' is not a role: owner, admin or member.")


def _require_another_owner(member: Developer) -> None:
    """Raise when `member` is the organization's last active owner (it would be left without one)."""
    if member.role != Role.OWNER:
        return
    others = Developer.objects.filter(organization_id=member.organization_id, role=Role.OWNER, is_active=True).exclude(
        pk=member.pk
    )
    if not others.exists():
        raise NotAllowed(f"{member.email} is the last owner of the organization: make someone else an owner first.")


# --- invitations ------------------------------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256((token or "").encode()).hexdigest()


def invitation_lifetime() -> datetime.timedelta:
    return datetime.timedelta(hours=settings.HOTCROSS_INVITATION_HOURS)


def _invitation_limits() -> list[throttle.Limit]:
    return [
        throttle.Limit(
            "address",
            settings.HOTCROSS_INVITATIONS_PER_ADDRESS_PER_HOUR,
            "Too many invitations were sent to this address. Try again in {when}.",
        ),
        throttle.Limit(
            "client",
            settings.HOTCROSS_INVITATIONS_PER_CLIENT_PER_HOUR,
            "Too many invitations were sent from your network. Try again in {when}.",
        ),
    ]


@sensitive_variables("token")
def invite(
    *,
    by: Developer,
    email: str,
    role: str = Role.MEMBER,
    with_seat: bool = True,
    actor: Any = None,
    client_ip: str | None = None,
) -> tuple[Invitation, str]:
    """Invite `email` to `by`'s organization and mail the link. Returns the invitation and its token (the link's
    secret: mailed, never stored). Members always get a seat on accepting; an admin or owner invited may come without.
    An invitation beyond the paid seats is allowed (the page says so): accepting needs a free seat then."""
    require_manager(by)
    _require_role(role)
    if role == Role.OWNER and by.role != Role.OWNER:
        raise NotAllowed("Only an owner can invite another owner.")
    email = normalize_email(email)
    probe = Invitation(organization_id=by.organization_id, email=email, role=role, token_hash="x" * 64)
    probe.expires_at = timezone.now()
    try:
        probe.full_clean(validate_unique=False, validate_constraints=False, exclude=["organization", "invited_by"])
    except Exception:
        raise InvalidInput(f"'{email[:80]}' is not an email address.") from None
    existing = Developer.objects.filter(email__iexact=email).select_related("organization").first()
    if existing is not None:
        where = "your organization" if existing.organization_id == by.organization_id else "another organization"
        raise DuplicateEmail(f"{email} is already a developer of {where}; an address belongs to one organization.")
    if Invitation.objects.pending().filter(organization_id=by.organization_id, email__iexact=email).exists():
        raise InvalidInput(f"{email} already has an invitation waiting: resend it or revoke it.")
    throttle.count("invitation", email=email, client_ip=client_ip, limits=_invitation_limits())
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = timezone.now()
    with transaction.atomic():
        invitation = Invitation.objects.create(
            organization_id=by.organization_id,
            email=email,
            role=role,
            with_seat=with_seat or role == Role.MEMBER,
            token_hash=token_hash(token),
            invited_by=by,
            created_at=now,
            sent_at=now,
            expires_at=now + invitation_lifetime(),
        )
        audit.record(
            actor=actor,
            obj=by.organization,
            message=f"Invited {email} as {Role(role).label.lower()}"
            f"{'' if invitation.with_seat else ' (without a seat)'} (by {by.email}).",
        )
        transaction.on_commit(lambda: _mail_invitation(invitation, token))
    logger.info("invitation sent id=%s organization=%s", invitation.pk, by.organization_id)
    return invitation, token


@sensitive_variables("token")
def resend_invitation(*, by: Developer, invitation: Invitation, actor: Any = None, client_ip: str | None = None) -> str:
    """Mail a new link (the old one stops working) with a new expiry. Returns the new token. Only an owner resends an
    invitation to become an owner (as only an owner invites one)."""
    require_manager(by, invitation.organization)
    if invitation.role == Role.OWNER and by.role != Role.OWNER:
        raise NotAllowed("Only an owner can invite another owner.")
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise InvalidInput(f"The invitation of {invitation.email} is {invitation.state}: invite again instead.")
    throttle.count("invitation", email=invitation.email, client_ip=client_ip, limits=_invitation_limits())
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = timezone.now()
    with transaction.atomic():
        changed = Invitation.objects.filter(pk=invitation.pk, accepted_at=None, revoked_at=None).update(
            token_hash=token_hash(token),
            sent_at=now,
            sends=invitation.sends + 1,
            expires_at=now + invitation_lifetime(),
        )
        if not changed:
            raise InvalidInput(f"The invitation of {invitation.email} was accepted or revoked meanwhile.")
        invitation.refresh_from_db()
        audit.record(actor=actor, obj=invitation.organization, message=f"Resent the invitation of {invitation.email}.")
        transaction.on_commit(lambda: _mail_invitation(invitation, token))
    return token


def revoke_invitation(*, by: Developer, invitation: Invitation, actor: Any = None) -> bool:
    """The link stops working. False when it was already accepted or revoked."""
    require_manager(by, invitation.organization)
    return _revoke(invitation, actor, f"Revoked the invitation of {invitation.email}.")


def _revoke(invitation: Invitation, actor: Any, message: str) -> bool:
    """Stop the link of a pending invitation and record `message` in the organization's history. False when it was
    already accepted or revoked."""
    with transaction.atomic():
        changed = bool(
            Invitation.objects.filter(pk=invitation.pk, accepted_at=None, revoked_at=None).update(
                revoked_at=timezone.now()
            )
        )
        if changed:
            audit.record(actor=actor, obj=invitation.organization, message=message)
    return changed


def invitation_for(token: str) -> Invitation:
    """The pending invitation of this token; `InvitationUnusable` (saying why) otherwise."""
    invitation = (
        Invitation.objects.select_related("organization").filter(token_hash=token_hash(token)).first()
        if token and len(token) <= 200
        else None
    )
    if invitation is None:
        raise InvitationUnusable(
            "This invitation link is not valid: it may have been replaced by a newer mail. Ask for a new invitation."
        )
    state = invitation.state
    if state != "pending":
        words = {
            "accepted": "has already been used. Sign in instead.",
            "revoked": "was revoked. Ask for a new invitation.",
            "expired": "has expired. Ask for a new invitation.",
        }
        raise InvitationUnusable(f"This invitation {words[state]}")
    return invitation


@sensitive_variables("token", "plain_key")
def accept_invitation(*, token: str, email: str, actor: Any = None) -> tuple[Developer, str]:
    """The invitee, whose address `email` was proven (a sign-in code), joins: a developer with the invitation's role,
    and a key when it comes with a seat (needs a free seat: `SeatLimitReached`, the invitation stays usable). The
    token works once (the invitation row is locked, so two accepts at once make one developer). Returns the developer
    and the plain key (empty without a seat): show it once."""
    invitation = invitation_for(token)
    if normalize_email(email) != normalize_email(invitation.email):
        raise InvitationUnusable(
            f"This invitation is for {invitation.email}; you proved another address. Sign in with that address."
        )
    with transaction.atomic():
        lock_organization(invitation.organization_id)
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if locked.token_hash != token_hash(token) or locked.state != "pending":
            raise InvitationUnusable("This invitation has already been used or was revoked meanwhile.")
        developer, plain_key = add_developer(
            organization=invitation.organization,
            email=invitation.email,
            role=locked.role,
            with_key=locked.with_seat,
            actor=actor,
        )
        Invitation.objects.filter(pk=locked.pk).update(accepted_at=timezone.now(), accepted_by=developer)
        audit.record(actor=actor, obj=invitation.organization, message=f"{invitation.email} accepted the invitation.")
    logger.info("invitation accepted id=%s developer=%s", invitation.pk, developer.pk)
    return developer, plain_key


def _mail_invitation(invitation: Invitation, token: str) -> None:
    link = mailer.link(f"/invitations/{token}/")
    inviter = invitation.invited_by.email if invitation.invited_by else "Hotcross"
    mailer.send_later(
        mailer.Mail(
            subject=f"{inviter} invites you to {invitation.organization.name} on Hotcross",
            message=(
                f"{inviter} invites you to join {invitation.organization.name} on Hotcross "
                f"as {Role(invitation.role).label.lower()}.\n\n"
                f"Accept here (the link works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n{link}\n\n"
                "You will confirm this address with a code we mail you. If you did not expect this, ignore this mail."
            ),
            to=invitation.email,
            kind="invitation",
        )
    )


# --- members ------------------------------------------------------------------------------------------------------


def change_role(*, by: Developer, member: Developer, role: str, actor: Any = None) -> Developer:
    """Give `member` another role. Only owners make or unmake owners; the last owner stays one."""
    _require_may_change(by, member)
    _require_role(role)
    if role == Role.OWNER and by.role != Role.OWNER:
        raise NotAllowed("Only an owner can make someone an owner.")
    return _write_role(member, role, actor, f"(by {by.email})")


def deactivate_member(*, by: Developer, member: Developer, actor: Any = None) -> bool:
    """Deactivate (the seat is freed, the key stops; reactivating restores it if a seat is free)."""
    _require_may_change(by, member)
    with transaction.atomic():
        lock_organization(member.organization_id)
        _require_another_owner(member)
        return deactivate_developer(developer=member, actor=actor)


def remove_member(*, by: Developer, member: Developer, actor: Any = None) -> bool:
    """Remove from the organization: deactivated and the key revoked (kept for the usage and the history)."""
    _require_may_change(by, member)
    with transaction.atomic():
        lock_organization(member.organization_id)
        _require_another_owner(member)
        revoked = revoke_key(developer=member, actor=actor)
        deactivated = deactivate_developer(developer=member, actor=actor)
        if revoked or deactivated:
            audit.record(actor=actor, obj=member, message=f"Removed from the organization (by {by.email}).")
    return revoked or deactivated


@sensitive_variables("plain_key")
def take_seat(*, developer: Developer, actor: Any = None) -> str:
    """An owner or admin who develops takes a seat: a new key (needs a free seat). Returns it, to show once."""
    if developer.holds_seat:
        raise InvalidInput("You already hold a seat: rotate your key on your account page instead.")
    _, plain_key = rotate_key(developer=developer, actor=actor)
    return plain_key


def give_up_seat(*, developer: Developer, actor: Any = None) -> bool:
    """An owner or admin who does not develop gives their seat back (their key is revoked). Members cannot: a
    member is a developer; an owner or admin removes them instead."""
    if developer.role not in MANAGING_ROLES:
        raise NotAllowed("A member holds a seat as a developer; an owner or admin can remove you instead.")
    return revoke_key(developer=developer, actor=actor)


# --- a member's key and activation, by an owner or admin on /org/ (the staff services behind the role rules) ---------


@sensitive_variables("plain_key")
def rotate_member_key(
    *,
    by: Developer,
    member: Developer,
    actor: Any = None,
    if_key_version: str | None = None,
    grace: datetime.timedelta | None = None,
) -> tuple[Developer, str]:
    """`rotate_key` for a member of `by`'s organization (only owners act on owners): returns the member and the new
    key, for the manager to hand over (show it once)."""
    _require_may_change(by, member)
    return rotate_key(developer=member, actor=actor, if_key_version=if_key_version, grace=grace)


def revoke_member_key(*, by: Developer, member: Developer, actor: Any = None) -> bool:
    """`revoke_key` for a member of `by`'s organization (only owners act on owners): the seat is freed."""
    _require_may_change(by, member)
    return revoke_key(developer=member, actor=actor)


def activate_member(*, by: Developer, member: Developer, actor: Any = None) -> bool:
    """`activate_developer` for a member of `by`'s organization (only owners act on owners); needs a free seat when
    the member's key is in use."""
    _require_may_change(by, member)
    return activate_developer(developer=member, actor=actor)


# --- staff (the admin) ------------------------------------------------------------------------------------------------
# Staff act on any organization, as themselves (`actor`: the staff user), under the same rules as owners otherwise:
# the last active owner stays one.


def set_role(*, developer: Developer, role: str, actor: Any = None) -> Developer:
    """Staff give `developer` another role. The organization's last active owner cannot be demoted."""
    _require_role(role)
    return _write_role(developer, role, actor, "by staff")


def _write_role(developer: Developer, role: str, actor: Any, by_words: str) -> Developer:
    """The role change itself, for owners' and staff's: under the organization's lock, from the row as it is now
    (nothing when it already has `role`); an active owner is demoted only while another active owner stays. Recorded
    as "Role changed from … to … `by_words`"."""
    if developer.role == role:
        return developer
    with transaction.atomic():
        lock_organization(developer.organization_id)
        current = Developer.objects.get(pk=developer.pk)
        if current.role == role:
            developer.role = role
            return developer
        if role != Role.OWNER and current.is_active:
            _require_another_owner(current)
        Developer.objects.filter(pk=developer.pk).update(role=role, updated_at=timezone.now())
        developer.role = role
        audit.record(
            actor=actor,
            obj=developer,
            message=f"Role changed from {Role(current.role).label.lower()} to {Role(role).label.lower()} {by_words}.",
        )
    keys_changed()
    return developer


def staff_revoke_invitation(*, invitation: Invitation, actor: Any = None) -> bool:
    """Staff revoke an invitation: the link stops working. False when it was already accepted or revoked."""
    return _revoke(invitation, actor, f"Revoked the invitation of {invitation.email} (staff).")
