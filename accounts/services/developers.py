"""Writes to developers and their keys: add, revoke, rotate, deactivate, activate, key expiry, revoking every key
of organizations, and signing a developer out of every OAuth client.

A rotation remembers the replaced key's hash (`ReplacedKey`), so the key check can answer `key_rotated` for it; with
a grace period (at most `MAX_GRACE`) the old key keeps working until then, on the developer's one seat. Revoking the
key, deactivating the developer or rotating again ends a running grace at once.

Taking a seat (adding, reactivating, re-keying a revoked developer) locks the organization row first, so concurrent
requests for the last free seat cannot both succeed. Plain keys are returned to the caller to show once and are
never stored or logged.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts import audit, keys, signals
from accounts.choices import Role
from accounts.exceptions import DuplicateEmail, InvalidInput, KeyChanged, SeatLimitReached
from accounts.models import Developer, Organization, ReplacedKey
from accounts.selectors import keys_in_use, seats_in_use
from accounts.services._base import keys_changed, lock_organization, refresh_from, save_unique, validate
from accounts.wording import plural

logger = logging.getLogger(__name__)

MAX_GRACE = datetime.timedelta(hours=24)
_GRACE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GRACE_PART = re.compile(r"(\d{1,6})([smhd])")


def check_new_developer(*, organization: Organization, email: str, first_name: str = "", last_name: str = "") -> None:
    """What `add_developer` would refuse with these values, without writing (for forms that validate first):
    `InvalidInput`, `DuplicateEmail` or `SeatLimitReached`. `add_developer` checks again under its lock."""
    validate(_new_developer(organization, email, first_name, last_name, api_key_hash=None))
    _require_unique_email(normalize_email(email))
    _require_free_seat(organization)


@sensitive_variables("plain_key")
def add_developer(
    *,
    organization: Organization,
    email: str,
    first_name: str = "",
    last_name: str = "",
    actor: Any = None,
    role: str = Role.MEMBER,
    with_key: bool = True,
) -> tuple[Developer, str]:
    """Add a developer with a new key. Returns the developer and the plain key: show it once, it is not stored.

    `role`: owner, admin or member. `with_key=False` (an owner or admin who does not develop): no key and no seat;
    the plain key returned is empty. Must run inside the caller's transaction when it is one step of several."""
    plain_key = keys.generate_key() if with_key else ""
    developer = _new_developer(
        organization, email, first_name, last_name, api_key_hash=keys.hash_key(plain_key) if with_key else None
    )
    developer.role = role
    if with_key:
        developer.api_key_prefix = keys.display_prefix(plain_key)
    else:
        developer.api_key_created_at = None
    email = developer.email
    validate(developer)
    with transaction.atomic():
        locked = lock_organization(organization)
        _require_unique_email(email)
        if with_key:
            _require_free_seat(locked)
        save_unique(developer, field="email", error=DuplicateEmail(_duplicate_email_message(email)))
        held = f"with key {developer.api_key_prefix}…" if with_key else "without a key (no seat)"
        as_role = "" if role == Role.MEMBER else f" as {Role(role).label.lower()}"
        audit.record(
            actor=actor,
            obj=developer,
            flag=audit.ADDITION,
            message=f"Added to {locked.name}{as_role} {held}.",
        )
    keys_changed()
    logger.info(
        "developer added id=%s organization=%s key_prefix=%s", developer.pk, organization.pk, developer.api_key_prefix
    )
    return developer, plain_key


def revoke_key(*, developer: Developer, actor: Any = None) -> bool:
    """Revoke the developer's key (frees the seat; an old key in its grace period stops too). False when it was already
    revoked or there is none."""
    now = timezone.now()
    with transaction.atomic():
        changed = bool(
            Developer.objects.filter(
                pk=developer.pk, api_key_revoked_at__isnull=True, api_key_hash__isnull=False
            ).update(api_key_revoked_at=now, updated_at=now)
        )
        grace_ended = _end_grace(developer, now)
        if changed:
            developer.api_key_revoked_at = now
            signed_out = _signed_out(developer, signals.KEY_REVOKED, actor)
            audit.record(
                actor=actor,
                obj=developer,
                message=f"Revoked key {developer.api_key_prefix}…." + grace_ended + signed_out,
            )
    if changed or grace_ended:
        keys_changed()
    if changed:
        logger.info("developer key revoked id=%s key_prefix=%s", developer.pk, developer.api_key_prefix)
    return changed


def revoke_all_keys(*, organizations: Iterable[Organization], actor: Any = None) -> int:
    """Revoke every key in use of these organizations (`selectors.keys_in_use`). Returns how many were revoked."""
    return sum(revoke_key(developer=developer, actor=actor) for developer in keys_in_use(organizations))


def sign_out_everywhere(*, developer: Developer, actor: Any = None) -> int:
    """Sign the developer out of every OAuth client: every grant, token, web session and unused authorization code
    ends (the OAuth app does it, on `signals.access_ended`, with the history). Returns how many grants were revoked."""
    return _access_ended(developer, signals.SIGNED_OUT_EVERYWHERE, actor)


@sensitive_variables("plain_key")
def rotate_key(
    *,
    developer: Developer,
    actor: Any = None,
    if_key_version: str | None = None,
    grace: datetime.timedelta | None = None,
) -> tuple[Developer, str]:
    """Issue a new key. Re-keying a revoked developer needs a free seat. The developer's web sessions and unused
    authorization codes end (`signals.access_ended`); their OAuth tokens are separate credentials and keep working.
    An expiry still ahead is kept; one that had passed is dropped (the history says which).

    The old key's hash is remembered (`ReplacedKey`): presented again, it is refused with `key_rotated` (or still
    `key_revoked` if it had been revoked). `grace` (up to `MAX_GRACE`; None or zero: none) lets the old key keep
    working that long beside the new one, on the same seat; only a working key can be given one (`InvalidInput`
    otherwise, nothing changed). A rotation during another's grace period ends that one at once: at most one old key
    works at a time.

    `if_key_version`: rotate only if the current key is still that one (`Developer.key_version`), else raise
    `KeyChanged`. A confirmation page passes what it showed, so a replayed or concurrent request issues no second
    key (and so shows no key again).
    """
    grace = valid_grace(grace)
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
        grace_until = _grace_until(current, grace, now)
        if current.is_active and not current.holds_seat:
            _require_free_seat(organization)
            current.seat_claimed_at = now
        earlier_grace_ended = _end_grace(current, now)
        if current.api_key_hash is not None:
            ReplacedKey.objects.create(
                developer=current,
                key_hash=current.api_key_hash,
                key_prefix=current.api_key_prefix,
                replaced_at=now,
                revoked_at=current.api_key_revoked_at,
                grace_until=grace_until,
            )
        current.api_key_hash = keys.hash_key(plain_key)
        current.api_key_prefix = keys.display_prefix(plain_key)
        current.api_key_created_at = now
        current.api_key_revoked_at = None
        expiry = _expiry_after_rotation(current, now)
        current.api_key_last_used_at = None
        current.save()
        signed_out = _signed_out(current, signals.KEY_ROTATED, actor)
        works = f" The old key works until {grace_until:%Y-%m-%d %H:%M:%S} UTC." if grace_until else ""
        audit.record(
            actor=actor,
            obj=current,
            message=f"Rotated key {old_prefix or '—'}… → {current.api_key_prefix}….{earlier_grace_ended}{works}"
            f"{expiry}{signed_out}",
        )
    refresh_from(developer, current)
    keys_changed()
    logger.info(
        "developer key rotated id=%s key_prefix=%s grace_until=%s", developer.pk, developer.api_key_prefix, grace_until
    )
    return developer, plain_key


def valid_grace(grace: datetime.timedelta | None) -> datetime.timedelta | None:
    """A rotation's grace period: None for none (or zero), at most `MAX_GRACE`; `InvalidInput` otherwise."""
    if grace is None or grace == datetime.timedelta(0):
        return None
    if grace < datetime.timedelta(0):
        raise InvalidInput("A grace period cannot be negative.")
    if grace > MAX_GRACE:
        raise InvalidInput(
            f"A grace period is at most 24 hours (24h), not {describe_grace(grace)}: "
            "the old key must stop working soon."
        )
    return grace


def parse_grace(text: str | None) -> datetime.timedelta | None:
    """`30s`, `15m`, `2h`, `1d` or combinations (`1h30m`); empty or `0` for none. `InvalidInput` for anything else or
    more than `MAX_GRACE`."""
    raw = (text or "").strip().lower().replace(" ", "")
    if raw in ("", "0"):
        return None
    parts = _GRACE_PART.findall(raw)
    if not parts or "".join(number + unit for number, unit in parts) != raw:
        shown = (text or "").strip()[:40]
        raise InvalidInput(
            f"'{shown}' is not a grace period: use a number and a unit, e.g. 30s, 15m, 2h or 1d (at most 24h)."
        )
    seconds = sum(int(number) * _GRACE_UNITS[unit] for number, unit in parts)
    return valid_grace(datetime.timedelta(seconds=seconds))


def describe_grace(grace: datetime.timedelta) -> str:
    """`1h30m`-style text of a duration (whole seconds)."""
    seconds = int(grace.total_seconds())
    text = ""
    for unit, size in sorted(_GRACE_UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size:
            text += f"{seconds // size}{unit}"
            seconds %= size
    return text or "0s"


def deactivate_developer(*, developer: Developer, actor: Any = None) -> bool:
    """Deactivate (frees the seat; the key, and an old key in its grace period, stop working). False when already
    inactive."""
    now = timezone.now()
    with transaction.atomic():
        changed = bool(
            Developer.objects.filter(pk=developer.pk, is_active=True).update(is_active=False, updated_at=now)
        )
        grace_ended = _end_grace(developer, now)
        if changed:
            developer.is_active = False
            audit.record(
                actor=actor,
                obj=developer,
                message="Deactivated." + grace_ended + _signed_out(developer, signals.DEACTIVATED, actor),
            )
    if changed or grace_ended:
        keys_changed()
    if changed:
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


def _grace_until(
    current: Developer, grace: datetime.timedelta | None, now: datetime.datetime
) -> datetime.datetime | None:
    """When the key being replaced stops working: None at once. A grace period is for a key that works now, and does
    not outlive the key's own expiry."""
    if grace is None:
        return None
    if not current.is_active or current.api_key_hash is None or current.api_key_revoked_at is not None:
        state = "deactivated" if not current.is_active else current.key_state
        raise InvalidInput(
            f"The key of {current.email} does not work now ({state}), so it cannot keep working for a grace period: "
            "rotate without one."
        )
    expires_at = current.api_key_expires_at
    if expires_at is not None and expires_at <= now:
        raise InvalidInput(
            f"The key of {current.email} expired on {expires_at:%Y-%m-%d %H:%M} UTC, so it cannot keep working for a "
            "grace period: rotate without one."
        )
    until = now + grace
    return min(until, expires_at) if expires_at is not None else until


def _signed_out(developer: Developer, reason: str, actor: Any) -> str:
    """End the developer's web sessions and unused authorization codes (`signals.access_ended`: the OAuth app ends
    them); what the history says (nothing when they never signed in)."""
    if not _access_ended(developer, reason, actor):
        return ""
    return " Web sessions and unused authorization codes ended."


def _access_ended(developer: Developer, reason: str, actor: Any) -> int:
    """Send `signals.access_ended`; what its receivers ended, summed."""
    answers = signals.access_ended.send(sender=Developer, developers=[developer], reason=reason, actor=actor)
    return sum(answer for _, answer in answers)


def _expiry_after_rotation(developer: Developer, now: datetime.datetime) -> str:
    """A key's expiry is when the developer's access ends (docs/clients.md, "Keys"): a rotation keeps one still ahead
    and drops one already passed (the new key would otherwise be born expired). What the history says about it."""
    expires_at = developer.api_key_expires_at
    if expires_at is None:
        return ""
    if expires_at > now:
        return f" The new key expires {expires_at:%Y-%m-%d %H:%M} UTC, as the old one did."
    developer.api_key_expires_at = None
    return f" The expiry {expires_at:%Y-%m-%d %H:%M} UTC had passed: the new key does not expire."


def _end_grace(developer: Developer, now: datetime.datetime) -> str:
    """Stop the developer's old key if it is in its grace period. Returns words for the history ("" when none was)."""
    ended = ReplacedKey.objects.filter(developer_id=developer.pk, grace_until__gt=now).update(grace_until=now)
    return " The old key's grace period ended." if ended else ""


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
