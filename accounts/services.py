"""Every write of the accounts domain. Admin, CLI, MCP and Stripe webhooks call these and hold no rules.

Seat rules: a seat is held by an active developer whose key is not revoked. Taking a seat (adding, reactivating,
re-keying a revoked developer) locks the organization row first, so concurrent requests for the last free seat
cannot both succeed. Lowering `max_seats` below the seats in use is allowed (a Stripe downgrade must apply); the
earliest seat holders keep access and the newest ones are refused by the key check.
"""

from __future__ import annotations

import datetime
import functools
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.utils import timezone

from accounts import async_pg, audit, key_cache, keys
from accounts.exceptions import AccountsError, DuplicateEmail, InvalidInput, KeyChanged, NotFound, SeatLimitReached
from accounts.models import Developer, Organization, PricingModel, SubscriptionStatus, UsageEvent
from accounts.selectors import seats_in_use

logger = logging.getLogger(__name__)

_UNSET = object()


# --- organizations ---------------------------------------------------------------------------------------------------


def create_organization(
    *,
    name: str,
    stripe_customer_id: str | None = None,
    max_seats: int = 1,
    subscription_status: str = SubscriptionStatus.INCOMPLETE,
    pricing_model: str = PricingModel.PER_ORGANIZATION,
    billing_email: str = "",
    actor: Any = None,
) -> Organization:
    organization = Organization(
        name=(name or "").strip(),
        stripe_customer_id=_blank_to_none(stripe_customer_id),
        max_seats=max_seats,
        subscription_status=_normalize_status(subscription_status),
        pricing_model=pricing_model,
        billing_email=(billing_email or "").strip(),
    )
    _validate(organization)
    _save_unique(organization, field="stripe_customer_id", error=_require_unique_stripe_id(organization))
    audit.record(
        actor=actor,
        obj=organization,
        flag=audit.ADDITION,
        message=f"Created with status {organization.subscription_status} and {organization.max_seats} seat(s).",
    )
    logger.info("organization created id=%s", organization.pk)
    return organization


def update_organization(
    *,
    organization: Organization,
    name: str | object = _UNSET,
    stripe_customer_id: str | object | None = _UNSET,
    billing_email: str | object = _UNSET,
    pricing_model: str | object = _UNSET,
    actor: Any = None,
) -> Organization:
    """Change an organization's descriptive fields. Status and seats have their own services."""
    before = {f: getattr(organization, f) for f in ("name", "stripe_customer_id", "billing_email", "pricing_model")}
    if name is not _UNSET:
        organization.name = str(name).strip()
    if stripe_customer_id is not _UNSET:
        organization.stripe_customer_id = _blank_to_none(stripe_customer_id)  # type: ignore[arg-type]
    if billing_email is not _UNSET:
        organization.billing_email = str(billing_email).strip()
    if pricing_model is not _UNSET:
        organization.pricing_model = pricing_model
    _validate(organization)
    _save_unique(organization, field="stripe_customer_id", error=_require_unique_stripe_id(organization))
    changed = [f.replace("_", " ") for f, value in before.items() if getattr(organization, f) != value]
    if changed:
        audit.record(actor=actor, obj=organization, message=f"Changed {', '.join(changed)}.")
    _keys_changed()
    return organization


def set_status(
    *, organization: Organization, status: str, subscription_id: str | None = None, actor: Any = None
) -> Organization:
    """Set the subscription status (Stripe's values). Key checks follow within a second. Idempotent."""
    status = _normalize_status(status)
    if status not in SubscriptionStatus.values:
        raise InvalidInput(
            f"'{status}' is not a subscription status. Use one of: {', '.join(SubscriptionStatus.values)}."
        )
    with transaction.atomic():
        locked = _lock(organization)
        old_status, old_subscription = locked.subscription_status, locked.subscription_id
        locked.subscription_status = status
        if subscription_id is not None:
            locked.subscription_id = subscription_id
        if (old_status, old_subscription) != (locked.subscription_status, locked.subscription_id):
            locked.save(update_fields=["subscription_status", "subscription_id", "updated_at"])
            message = f"Subscription status: {old_status} → {status}."
            if locked.subscription_id != old_subscription:
                message += f" Subscription: {old_subscription or '—'} → {locked.subscription_id or '—'}."
            audit.record(actor=actor, obj=locked, message=message)
            logger.info("organization status set id=%s status=%s", locked.pk, status)
    _refresh_from(organization, locked)
    _keys_changed()
    return organization


def set_seats(*, organization: Organization, max_seats: int, actor: Any = None) -> Organization:
    """Set the seat count. Below the seats in use is allowed: the newest extra holders lose access."""
    if isinstance(max_seats, bool) or not isinstance(max_seats, int) or max_seats < 0:
        raise InvalidInput(f"Seats must be a whole number of 0 or more, not {max_seats!r}.")
    with transaction.atomic():
        locked = _lock(organization)
        old_seats = locked.max_seats
        if old_seats != max_seats:
            locked.max_seats = max_seats
            locked.save(update_fields=["max_seats", "updated_at"])
            used = seats_in_use(locked)
            message = f"Seats: {old_seats} → {max_seats}."
            if used > max_seats:
                message += f" {used} in use: the {used - max_seats} newest seat holder(s) lose access."
                logger.info(
                    "organization over seat limit id=%s seats_in_use=%s max_seats=%s", locked.pk, used, max_seats
                )
            audit.record(actor=actor, obj=locked, message=message)
    _refresh_from(organization, locked)
    _keys_changed()
    return organization


# --- developers and keys --------------------------------------------------------------------------------------------


def add_developer(
    *, organization: Organization, email: str, first_name: str = "", last_name: str = "", actor: Any = None
) -> tuple[Developer, str]:
    """Add a developer with a new key. Returns the developer and the plain key: show it once, it is not stored."""
    email = normalize_email(email)
    plain_key = keys.generate_key()
    now = timezone.now()
    developer = Developer(
        organization=organization,
        email=email,
        first_name=(first_name or "").strip(),
        last_name=(last_name or "").strip(),
        api_key_hash=keys.hash_key(plain_key),
        api_key_prefix=keys.display_prefix(plain_key),
        api_key_created_at=now,
        seat_claimed_at=now,
        created_at=now,
    )
    _validate(developer)
    with transaction.atomic():
        locked = _lock(organization)
        _require_unique_email(email)
        _require_free_seat(locked)
        _save_unique(developer, field="email", error=DuplicateEmail(_duplicate_email_message(email)))
        audit.record(
            actor=actor,
            obj=developer,
            flag=audit.ADDITION,
            message=f"Added to {locked.name} with key {developer.api_key_prefix}….",
        )
    _keys_changed()
    logger.info(
        "developer added id=%s organization=%s key_prefix=%s",
        developer.pk,
        organization.pk,
        developer.api_key_prefix,
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
        _keys_changed()
        logger.info("developer key revoked id=%s key_prefix=%s", developer.pk, developer.api_key_prefix)
    return changed


def rotate_key(*, developer: Developer, actor: Any = None, if_key_version: str | None = None) -> tuple[Developer, str]:
    """Issue a new key; the old one stops working at once. Re-keying a revoked developer needs a free seat.

    `if_key_version`: rotate only if the current key is still that one (`Developer.key_version`), else raise
    `KeyChanged`. A confirmation page passes what it showed, so a replayed or concurrent request issues no second
    key (and so shows no key again).
    """
    plain_key = keys.generate_key()
    now = timezone.now()
    with transaction.atomic():
        organization = _lock(developer.organization)
        current = Developer.objects.select_for_update().get(pk=developer.pk)
        if if_key_version is not None and current.key_version != if_key_version:
            raise KeyChanged(
                f"{current.email}: the key changed after the confirmation page was opened (already rotated?). "
                "Nothing was done; open the page again to rotate it."
            )
        old_prefix = current.api_key_prefix
        takes_seat = current.is_active and not current.holds_seat
        if takes_seat:
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
    _refresh_from(developer, current)
    _keys_changed()
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
        _keys_changed()
        logger.info("developer deactivated id=%s", developer.pk)
    return changed


def activate_developer(*, developer: Developer, actor: Any = None) -> bool:
    """Reactivate; takes a seat again (and joins the end of the seat order) when the key is not revoked."""
    now = timezone.now()
    with transaction.atomic():
        organization = _lock(developer.organization)
        current = Developer.objects.select_for_update().get(pk=developer.pk)
        if current.is_active:
            return False
        current.is_active = True
        if current.holds_seat:
            _require_free_seat(organization)
            current.seat_claimed_at = now
        current.save(update_fields=["is_active", "seat_claimed_at", "updated_at"])
        audit.record(actor=actor, obj=current, message="Activated.")
    _refresh_from(developer, current)
    _keys_changed()
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
    _keys_changed()
    logger.info("developer key expiry set id=%s expires_at=%s", developer.pk, expires_at)
    return developer


# --- helpers --------------------------------------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def _normalize_status(status: str) -> str:
    return (status or "").strip().lower()


def _blank_to_none(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _lock(organization: Organization | uuid.UUID) -> Organization:
    org_id = organization.pk if isinstance(organization, Organization) else organization
    return Organization.objects.select_for_update().get(pk=org_id)


def _require_free_seat(organization: Organization) -> None:
    used = seats_in_use(organization)
    if used >= organization.max_seats:
        raise SeatLimitReached(
            f"{organization.name} uses {used} of {organization.max_seats} seat"
            f"{'s' if organization.max_seats != 1 else ''}. Add seats, or revoke or deactivate a developer first."
        )


def _require_unique_email(email: str) -> None:
    if Developer.objects.filter(email__iexact=email).exists():
        raise DuplicateEmail(_duplicate_email_message(email))


def _duplicate_email_message(email: str) -> str:
    return f"A developer with the email {email} already exists (emails are unique, ignoring letter case)."


def _validate(instance: Organization | Developer) -> None:
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc)) from None


def _save_unique(instance: Organization | Developer, *, field: str, error: AccountsError) -> None:
    """Save; a unique violation lost to a concurrent writer becomes the same clear error as the pre-check."""
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        if field in str(exc):
            raise error from None
        raise


def _require_unique_stripe_id(organization: Organization) -> InvalidInput:
    """Raise when another organization has this Stripe customer id; return the error to use on a lost race."""
    error = InvalidInput(f"Another organization already has the Stripe customer id {organization.stripe_customer_id}.")
    if (
        organization.stripe_customer_id
        and Organization.objects.filter(stripe_customer_id=organization.stripe_customer_id)
        .exclude(pk=organization.pk)
        .exists()
    ):
        raise error
    return error


def _describe(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        parts = []
        for field, errors in exc.message_dict.items():
            label = "" if field == "__all__" else f"{field.replace('_', ' ')}: "
            parts.append(label + " ".join(errors))
        return "; ".join(parts)
    return " ".join(exc.messages)


def _refresh_from(target: Organization | Developer, source: Organization | Developer) -> None:
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def _keys_changed() -> None:
    """Forget remembered key checks in this process now, and again once the transaction commits."""
    key_cache.clear()
    transaction.on_commit(key_cache.clear)


# --- usage (MCP metering) -------------------------------------------------------------------------------------------

_MAX_DURATION_MS = 2**31 - 1  # PositiveIntegerField's ceiling on every database


def record_usage(
    *,
    developer_id: uuid.UUID,
    organization_id: uuid.UUID,
    tool_name: str,
    ok: bool,
    duration_ms: int,
    created_at: datetime.datetime | None = None,
) -> UsageEvent:
    """Record one served MCP tool call (metering and the admin usage chart). One INSERT.

    No admin history: a tool call is not an administrative change, and there is one event per call.
    """
    event = _usage_event(
        developer_id=developer_id,
        organization_id=organization_id,
        tool_name=tool_name,
        ok=ok,
        duration_ms=duration_ms,
        created_at=created_at,
    )
    try:
        event.save(force_insert=True)
    except IntegrityError:
        # The foreign keys are checked when the row commits (autocommit: at once): the developer or organization
        # was deleted meanwhile, or the ids name nothing.
        raise _usage_not_found(developer_id, organization_id) from None
    return event


def record_usages(calls: Sequence[dict[str, Any]]) -> list[UsageEvent | AccountsError]:
    """Record several served calls (each a dict of `record_usage`'s arguments) in one INSERT.

    The answer has one entry per call, in order: its event, or the error that kept it from being recorded (bad
    input, or a developer deleted meanwhile). One call's error never loses the others' events.
    """
    results: list[UsageEvent | AccountsError] = []
    for call in calls:
        try:
            results.append(_usage_event(**call))
        except AccountsError as exc:
            results.append(exc)
    events = [event for event in results if isinstance(event, UsageEvent)]
    if not events:
        return results
    try:
        with transaction.atomic():
            UsageEvent.objects.bulk_create(events)
    except IntegrityError:
        # One of them names a developer or organization that no longer exists: record them one by one.
        return [outcome if not isinstance(outcome, UsageEvent) else _saved_or_error(outcome) for outcome in results]
    return results


async def arecord_usages(calls: Sequence[dict[str, Any]]) -> list[AccountsError | None]:
    """`record_usages` for async callers on PostgreSQL (`accounts.async_pg.available()`): one multi-row INSERT from
    the event loop, without the hand-off to a thread that the ORM needs. Elsewhere call `record_usages` in a thread.

    One entry per call, in order: None when recorded, else the error that kept it out. Connection failures raise
    Django's `OperationalError`, as from the ORM.
    """
    if not async_pg.available():
        raise NotImplementedError("arecord_usages needs PostgreSQL; call record_usages in a thread instead.")
    results: list[AccountsError | None] = []
    rows: list[tuple[int, tuple[Any, ...]]] = []
    for index, call in enumerate(calls):
        try:
            values = _usage_values(**call)
        except AccountsError as exc:
            results.append(exc)
            continue
        results.append(None)
        rows.append((index, tuple(values[column] for column in _USAGE_COLUMNS)))
    if not rows:
        return results
    try:
        await async_pg.execute(*_usage_insert([row for _, row in rows]))
    except IntegrityError:
        # One of them names a developer or organization that no longer exists: write them one by one.
        for index, row in rows:
            try:
                await async_pg.execute(*_usage_insert([row]))
            except IntegrityError:
                results[index] = _usage_not_found(row[0], row[1])
    return results


_USAGE_COLUMNS = ("developer_id", "organization_id", "tool_name", "ok", "duration_ms", "created_at")


def _usage_insert(rows: Sequence[tuple[Any, ...]]) -> tuple[str, list[str]]:
    """One INSERT of `rows` (values in `_USAGE_COLUMNS` order) on PostgreSQL: one array literal per column, unnested.

    The statement is the same whatever the number of rows, so psycopg parses it once and the server prepares it once.
    The arrays are written here as PostgreSQL array literals rather than adapted value by value by the driver (its
    list adaptation is pure Python, and it was most of what metering cost the MCP server's event loop).
    """
    developer_ids, organization_ids, tool_names, oks, durations, times = zip(*rows, strict=True)
    return _usage_insert_sql(), [
        _array_literal(map(str, developer_ids)),
        _array_literal(map(str, organization_ids)),
        _array_literal(tool_names, quote=True),
        _array_literal("t" if ok else "f" for ok in oks),
        _array_literal(map(str, durations)),
        _array_literal(time.isoformat() for time in times),
    ]


def _array_literal(elements: Iterable[str], *, quote: bool = False) -> str:
    """A PostgreSQL array literal. `quote` for free text: each element double-quoted, `\\` and `"` escaped, so commas,
    braces and spaces are data. Unquoted elements must not contain those (UUIDs, numbers, ISO times do not)."""
    if quote:
        elements = ('"' + element.replace("\\", "\\\\").replace('"', '\\"') + '"' for element in elements)
    return "{" + ",".join(elements) + "}"


@functools.cache
def _usage_insert_sql() -> str:
    # Once per process: in async code each task would make itself a database connection object to quote the names.
    quote = db_connection.ops.quote_name
    fields = [UsageEvent._meta.get_field(name) for name in _USAGE_COLUMNS]
    columns = ", ".join(quote(field.column) for field in fields)
    arrays = ", ".join(f"%s::{field.db_type(db_connection)}[]" for field in fields)  # e.g. %s::uuid[]
    table = quote(UsageEvent._meta.db_table)
    return f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"  # noqa: S608 (the model's own names)


def _saved_or_error(event: UsageEvent) -> UsageEvent | AccountsError:
    try:
        with transaction.atomic():
            event.save(force_insert=True)
    except IntegrityError:
        return _usage_not_found(event.developer_id, event.organization_id)
    return event


def _usage_event(**call: Any) -> UsageEvent:
    """A validated, unsaved usage event."""
    return UsageEvent(**_usage_values(**call))


def _usage_values(
    *,
    developer_id: uuid.UUID,
    organization_id: uuid.UUID,
    tool_name: str,
    ok: bool,
    duration_ms: int,
    created_at: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A usage event's column values, validated and normalised (the rules of `record_usage`)."""
    name = tool_name.strip() if isinstance(tool_name, str) else ""
    if not name or len(name) > _TOOL_NAME_MAX:
        raise InvalidInput(
            f"A usage event needs a tool name of 1 to {_TOOL_NAME_MAX} characters, not {tool_name!r:.80}."
        )
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms < 0:
        raise InvalidInput(f"A call's duration must be a whole number of milliseconds, 0 or more, not {duration_ms!r}.")
    if created_at is not None and timezone.is_naive(created_at):
        raise InvalidInput("The time of a usage event needs a time zone.")
    return {
        "developer_id": developer_id,
        "organization_id": organization_id,
        "tool_name": name,
        "ok": bool(ok),
        "duration_ms": min(duration_ms, _MAX_DURATION_MS),
        "created_at": created_at or timezone.now(),
    }


_TOOL_NAME_MAX = UsageEvent._meta.get_field("tool_name").max_length


def _usage_not_found(developer_id: uuid.UUID, organization_id: uuid.UUID) -> NotFound:
    return NotFound(f"Cannot record usage: developer {developer_id} of organization {organization_id} does not exist.")
