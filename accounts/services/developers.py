"""Writes to developers and their keys: add, revoke, rotate, deactivate, activate, key expiry, and revoking every key
of organizations.

Taking a seat (adding, reactivating, re-keying a revoked developer) locks the organization row first, so concurrent
requests for the last free seat cannot both succeed. Plain keys are returned to the caller to show once and are
never stored or logged.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts import audit, keys
from accounts.exceptions import DuplicateEmail, InvalidInput, KeyChanged, SeatLimitReached
from accounts.models import Developer, Organization
from accounts.selectors import keys_in_use, seats_in_use
from accounts.services._base import keys_changed, lock_organization, refresh_from, save_unique, validate
from accounts.wording import plural

logger = logging.getLogger(__name__)


def check_new_developer(*, organization: Organization, email: str, first_name: str = "", last_name: str = "") -> None:
    """What `add_developer` would refuse with these values, without writing (for forms that validate first):
    `InvalidInput`, `DuplicateEmail` or `SeatLimitReached`. `add_developer` checks again under its lock."""
    validate(_new_developer(organization, email, first_name, last_name, api_key_hash=None))
    _require_unique_email(normalize_email(email))
    _require_free_seat(organization)


@sensitive_variables("plain_key")
def add_developer(
    *, organization: Organization, email: str, first_name: str = "", last_name: str = "", actor: Any = None
) -> tuple[Developer, str]:
    """Add a developer with a new key. Returns the developer and the plain key: show it once, it is not stored."""
    plain_key = keys.generate_key()
    developer = _new_developer(organization, email, first_name, last_name, api_key_hash=keys.hash_key(plain_key))
    developer.api_key_prefix = keys.display_prefix(plain_key)
    email = developer.email
    validate(developer)
    with transaction.atomic():
        locked = lock_organization(organization)
        _require_unique_email(email)
        _require_free_seat(locked)
        save_unique(developer, field="email", error=DuplicateEmail(_duplicate_email_message(email)))
        audit.record(
            actor=actor,
            obj=developer,
            flag=audit.ADDITION,
            message=f"Added to {locked.name} with key {developer.api_key_prefix}….",
        )
    keys_changed()
    logger.info(
        "developer added id=%s organization=%s key_prefix=%s", developer.pk, organization.pk, developer.api_key_prefix
    )
    return developer, plain_key


def revoke_key(*, developer: Developer, actor: Any = None) -> bool:
    """Revoke the developer's key (frees the seat). False when it was already revoked or there is none."""
    now = timezone.now()
    changed = bool(
        Developer.objects.filter(pk=developer.pk, api_key_revoked_at__isnull=True, api_key_hash__isnull=False).update(
            api_key_revoked_at=now, updated_at=now
        )
    )
    if changed:
        developer.api_key_revoked_at = now
        audit.record(actor=actor, obj=developer, message=f"Revoked key {developer.api_key_prefix}….")
        keys_changed()
        logger.info("developer key revoked id=%s key_prefix=%s", developer.pk, developer.api_key_prefix)
    return changed


def revoke_all_keys(*, organizations: Iterable[Organization], actor: Any = None) -> int:
    """Revoke every key in use of these organizations (`selectors.keys_in_use`). Returns how many were revoked."""
    return sum(revoke_key(developer=developer, actor=actor) for developer in keys_in_use(organizations))


@sensitive_variables("plain_key")
def rotate_key(*, developer: Developer, actor: Any = None, if_key_version: str | None = None) -> tuple[Developer, str]:
    """Issue a new key; the old one stops working at once. Re-keying a revoked developer needs a free seat.

    `if_key_version`: rotate only if the current key is still that one (`Developer.key_version`), else raise
    `KeyChanged`. A confirmation page passes what it showed, so a replayed or concurrent request issues no second
    key (and so shows no key again).
    """
    plain_key = keys.generate_key()
    now = timezone.now()
    with transaction.atomic():
        organization = lock_organization(developer.organization_id)
        current = Developer.objects.select_for_update().get(pk=developer.pk)
        if if_key_version is not None and current.key_version != if_key_version:
            raise KeyChanged(
                f"Nothing was done for {current.email}: the key changed after the confirmation page was opened "
                "(already rotated?). Open the page again to rotate it."
            )
        old_prefix = current.api_key_prefix
        if current.is_active and not current.holds_seat:
            _require_free_seat(organization)
            current.seat_claimed_at = now
        current.api_key_hash = keys.hash_key(plain_key)
        current.api_key_prefix = keys.display_prefix(plain_key)
        current.api_key_created_at = now
        current.api_key_revoked_at = None
        current.api_key_expires_at = None  # an expiry belonged to the old key
        current.api_key_last_used_at = None
        current.save()
        audit.record(actor=actor, obj=current, message=f"Rotated key {old_prefix or '—'}… → {current.api_key_prefix}….")
    refresh_from(developer, current)
    keys_changed()
    logger.info("developer key rotated id=%s key_prefix=%s", developer.pk, developer.api_key_prefix)
    return developer, plain_key


def deactivate_developer(*, developer: Developer, actor: Any = None) -> bool:
    """Deactivate (frees the seat; the key stops working). False when already inactive."""
    changed = bool(
        Developer.objects.filter(pk=developer.pk, is_active=True).update(is_active=False, updated_at=timezone.now())
    )
    if changed:
        developer.is_active = False
        audit.record(actor=actor, obj=developer, message="Deactivated.")
        keys_changed()
        logger.info("developer deactivated id=%s", developer.pk)
    return changed


def activate_developer(*, developer: Developer, actor: Any = None) -> bool:
    """Reactivate; takes a seat again (and joins the end of the seat order) when the key is not revoked."""
    now = timezone.now()
    with transaction.atomic():
        organization = lock_organization(developer.organization_id)
        current = Developer.objects.select_for_update().get(pk=developer.pk)
        if current.is_active:
            return False
        current.is_active = True
        if current.holds_seat:
            _require_free_seat(organization)
            current.seat_claimed_at = now
        current.save(update_fields=["is_active", "seat_claimed_at", "updated_at"])
        audit.record(actor=actor, obj=current, message="Activated.")
    refresh_from(developer, current)
    keys_changed()
    logger.info("developer activated id=%s", developer.pk)
    return True


def set_key_expiry(*, developer: Developer, expires_at: datetime.datetime | None, actor: Any = None) -> Developer:
    """Make the current key stop working at `expires_at` (None: never)."""
    if expires_at is not None and timezone.is_naive(expires_at):
        raise InvalidInput("The expiry needs a time zone (for example 2027-01-31T00:00:00+00:00).")
    Developer.objects.filter(pk=developer.pk).update(api_key_expires_at=expires_at, updated_at=timezone.now())
    developer.api_key_expires_at = expires_at
    audit.record(
        actor=actor,
        obj=developer,
        message=f"Key {developer.api_key_prefix}… expires "
        + (f"{expires_at:%Y-%m-%d %H:%M} UTC." if expires_at else "never."),
    )
    keys_changed()
    logger.info("developer key expiry set id=%s expires_at=%s", developer.pk, expires_at)
    return developer


# --- rules ----------------------------------------------------------------------------------------------------------


def _new_developer(
    organization: Organization, email: str, first_name: str, last_name: str, *, api_key_hash: str | None
) -> Developer:
    now = timezone.now()
    return Developer(
        organization=organization,
        email=normalize_email(email),
        first_name=(first_name or "").strip(),
        last_name=(last_name or "").strip(),
        api_key_hash=api_key_hash,
        api_key_created_at=now,
        seat_claimed_at=now,
        created_at=now,
    )


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def _require_free_seat(organization: Organization) -> None:
    used = seats_in_use(organization)
    if used >= organization.max_seats:
        raise SeatLimitReached(
            f"{organization.name} uses {used} of {plural(organization.max_seats, 'seat')}. "
            "Add seats, or revoke or deactivate a developer first."
        )


def _require_unique_email(email: str) -> None:
    if Developer.objects.filter(email__iexact=email).exists():
        raise DuplicateEmail(_duplicate_email_message(email))


def _duplicate_email_message(email: str) -> str:
    return f"A developer with the email {email} already exists (emails are unique, ignoring letter case)."
