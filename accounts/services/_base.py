"""What every service module shares: validation in the domain's words, row locks, and the key-check memory."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts import check_cache
from accounts.exceptions import AccountsError, InvalidInput
from accounts.models import Developer, Organization


def lock_organization(organization: Organization | uuid.UUID) -> Organization:
    """The organization's row, locked until the transaction ends (seat changes of one organization take turns)."""
    org_id = organization.pk if isinstance(organization, Organization) else organization
    return Organization.objects.select_for_update().get(pk=org_id)


def validate(instance: Organization | Developer) -> None:
    """The model's field validation, as `InvalidInput` with every problem in one message."""
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc)) from None


def save_unique(instance: Organization | Developer, *, field: str, error: AccountsError) -> None:
    """Save; a unique violation lost to a concurrent writer becomes the same clear error as the pre-check."""
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        if field in str(exc):
            raise error from None
        raise


def refresh_from(target: Organization | Developer, source: Organization | Developer) -> None:
    """Give the caller's instance the values the service wrote on its locked copy."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def keys_changed() -> None:
    """Forget remembered key checks in this process now, and again once the transaction commits."""
    check_cache.clear()
    transaction.on_commit(check_cache.clear)


def blank_to_none(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _describe(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        parts = []
        for field, errors in exc.message_dict.items():
            label = "" if field == "__all__" else f"{field.replace('_', ' ')}: "
            parts.append(label + " ".join(errors))
        return "; ".join(parts)
    return " ".join(exc.messages)
