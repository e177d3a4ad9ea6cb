"""Reads of the accounts domain used by more than one caller, and the public key check."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import key_cache, keys
from accounts.exceptions import KeyRefused, NotFound
from accounts.models import Developer, Organization

LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as established by a key check."""

    developer_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    organization_name: str
    subscription_status: str
    max_seats: int


@dataclass(frozen=True, slots=True)
class _Checked:
    """What the key check remembers for up to a second: the outcome, and the expiry that time alone can change."""

    principal: Principal | None
    refusal: tuple[str, str] | None  # (code, message); a fresh exception is raised on every check
    expires_at: datetime.datetime | None


# --- organizations and seats ----------------------------------------------------------------------------------------


def get_organization(organization_id: uuid.UUID | str) -> Organization:
    try:
        return Organization.objects.get(pk=_as_uuid(organization_id, "organization"))
    except Organization.DoesNotExist:
        raise NotFound(f"No organization has the id {organization_id}.") from None


def get_developer(developer_id: uuid.UUID | str) -> Developer:
    try:
        return Developer.objects.select_related("organization").get(pk=_as_uuid(developer_id, "developer"))
    except Developer.DoesNotExist:
        raise NotFound(f"No developer has the id {developer_id}.") from None


def seats_in_use(organization: Organization | uuid.UUID) -> int:
    org_id = organization.pk if isinstance(organization, Organization) else organization
    return Developer.objects.seat_holders().filter(organization_id=org_id).count()


def organizations_with_seats() -> QuerySet[Organization]:
    """Organizations annotated with `seats_used`, `developer_count` and `over_seat_limit` (one query)."""
    holders = (
        Developer.objects.seat_holders()
        .filter(organization=OuterRef("pk"))
        .order_by()
        .values("organization")
        .annotate(n=Count("pk"))
        .values("n")
    )
    everyone = (
        Developer.objects.filter(organization=OuterRef("pk"))
        .order_by()
        .values("organization")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Organization.objects.annotate(
        seats_used=Coalesce(Subquery(holders, output_field=IntegerField()), Value(0)),
        developer_count=Coalesce(Subquery(everyone, output_field=IntegerField()), Value(0)),
    ).annotate(over_seat_limit=ExpressionWrapper(Q(seats_used__gt=F("max_seats")), output_field=BooleanField()))


def developers_with_seat_rank(organization: Organization) -> list[Developer]:
    """An organization's developers in seat order, each with `seat_rank` (1-based) and `over_limit` set."""
    developers = list(Developer.objects.filter(organization=organization).order_by("seat_claimed_at", "id"))
    rank = 0
    for developer in developers:
        if developer.holds_seat:
            rank += 1
            developer.seat_rank = rank
            developer.over_limit = rank > organization.max_seats
        else:
            developer.seat_rank = None
            developer.over_limit = False
    return developers


# --- the key check -------------------------------------------------------------------------------------------------


def authenticate_key(raw_key: str) -> Principal:
    """The developer a key belongs to, or `KeyRefused` with a stable `.code` and a message a person can act on.

    Cold: one query (developer, organization and the developer's seat rank together), plus an update of
    `api_key_last_used_at` at most once a minute per developer. Warm: served from this process's memory for at
    most a second (see `accounts.key_cache`).
    """
    key = keys.normalize(raw_key)
    if key is None:
        raise _invalid_key()
    key_hash = keys.hash_key(key)
    checked = key_cache.get(key_hash)
    if checked is None:
        checked = _check_in_database(key_hash)
        if checked is None:
            raise _invalid_key()
        key_cache.put(key_hash, checked)
    return _outcome(checked)


async def aauthenticate_key(raw_key: str) -> Principal:
    """`authenticate_key` for async callers: memory hits stay on the event loop, database work runs in a thread."""
    key = keys.normalize(raw_key)
    if key is None:
        raise _invalid_key()
    checked = key_cache.get(keys.hash_key(key))
    if checked is not None:
        return _outcome(checked)
    return await sync_to_async(authenticate_key, thread_sensitive=False)(raw_key)


def _outcome(checked: _Checked) -> Principal:
    if checked.refusal is not None:
        raise KeyRefused(*checked.refusal)
    if checked.expires_at is not None and checked.expires_at <= timezone.now():
        raise _expired(checked.expires_at)
    assert checked.principal is not None
    return checked.principal


def _check_in_database(key_hash: str) -> _Checked | None:
    seats_ahead = (
        Developer.objects.seat_holders()
        .filter(organization=OuterRef("organization"))
        .filter(
            Q(seat_claimed_at__lt=OuterRef("seat_claimed_at"))
            | Q(seat_claimed_at=OuterRef("seat_claimed_at"), id__lt=OuterRef("id"))
        )
        .order_by()
        .values("organization")
        .annotate(n=Count("pk"))
        .values("n")
    )
    developer = (
        Developer.objects.select_related("organization")
        .annotate(seats_ahead=Coalesce(Subquery(seats_ahead, output_field=IntegerField()), Value(0)))
        .filter(api_key_hash=key_hash)
        .first()
    )
    if developer is None:
        return None
    org = developer.organization
    refusal = _refusal(developer, org)
    principal = None
    if refusal is None:
        principal = Principal(
            developer_id=developer.id,
            organization_id=org.id,
            email=developer.email,
            first_name=developer.first_name,
            last_name=developer.last_name,
            organization_name=org.name,
            subscription_status=org.subscription_status,
            max_seats=org.max_seats,
        )
        _touch_last_used(developer)
    return _Checked(
        principal=principal,
        refusal=None if refusal is None else (refusal.code, refusal.message),
        expires_at=developer.api_key_expires_at,
    )


def _refusal(developer: Developer, org: Organization) -> KeyRefused | None:
    if developer.api_key_revoked_at is not None:
        return KeyRefused(
            KeyRefused.KEY_REVOKED,
            f"This API key was revoked on {developer.api_key_revoked_at:%Y-%m-%d %H:%M} UTC. "
            f"Ask an administrator of {org.name} for a new key.",
        )
    if developer.api_key_expires_at is not None and developer.api_key_expires_at <= timezone.now():
        return _expired(developer.api_key_expires_at)
    if not developer.is_active:
        return KeyRefused(
            KeyRefused.DEVELOPER_INACTIVE,
            f"The developer account {developer.email} is deactivated. Ask an administrator of {org.name} "
            "to reactivate it.",
        )
    if org.subscription_status not in settings.HOTCROSS_ALLOWED_STATUSES:
        return KeyRefused(
            KeyRefused.SUBSCRIPTION_INACTIVE,
            f"{org.name}'s subscription is {org.subscription_status}, so its keys do not work. "
            "Keys work again as soon as the subscription is active; check billing.",
        )
    if developer.seats_ahead >= org.max_seats:
        return KeyRefused(
            KeyRefused.SEAT_LIMIT_EXCEEDED,
            f"{org.name} has {org.max_seats} seat{'s' if org.max_seats != 1 else ''} and they are held by "
            "developers who joined earlier. Ask an administrator to add seats or free one.",
        )
    return None


def _touch_last_used(developer: Developer) -> None:
    now = timezone.now()
    last = developer.api_key_last_used_at
    if last is not None and now - last < LAST_USED_RESOLUTION:
        return
    # The condition makes concurrent checks (other threads, other workers) write at most once per minute too.
    Developer.objects.filter(pk=developer.pk).filter(
        Q(api_key_last_used_at__isnull=True) | Q(api_key_last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(api_key_last_used_at=now)


def _invalid_key() -> KeyRefused:
    return KeyRefused(
        KeyRefused.INVALID_KEY,
        "This API key is not valid. Check that you copied the whole key (it starts with hc_live_), "
        "or ask an administrator of your organization for a new one.",
    )


def _expired(expires_at: datetime.datetime) -> KeyRefused:
    return KeyRefused(
        KeyRefused.KEY_EXPIRED,
        f"This API key expired on {expires_at:%Y-%m-%d %H:%M} UTC. Ask an administrator of your organization "
        "to rotate it.",
    )


def _as_uuid(value: uuid.UUID | str, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise NotFound(f"'{value}' is not a valid {what} id (expected a UUID).") from None
