"""Admin history (`LogEntry`) for every write, whoever makes it: staff in the admin, `manage.py orgs`, Stripe.

Writes made without a person behind them (the command line, webhooks) are recorded against a system user, so
staff see in each object's history what changed and when.
"""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.db import models

SYSTEM_USERNAME = "hotcross-system"

__all__ = ["ADDITION", "CHANGE", "DELETION", "SYSTEM_USERNAME", "record", "system_user"]


def system_user() -> models.Model:
    """The inactive user that stands for the command line and webhooks in the admin history."""
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username=SYSTEM_USERNAME,
        defaults={"is_active": False, "first_name": "Hotcross", "last_name": "system"},
    )
    return user


def record(*, actor: models.Model | None, obj: models.Model, message: str, flag: int = CHANGE) -> None:
    """Add one history line for `obj`: `message` says what happened in words staff understand."""
    user = actor if actor is not None and getattr(actor, "pk", None) else system_user()
    LogEntry.objects.log_actions(
        user_id=user.pk, queryset=[obj], action_flag=flag, change_message=message, single_object=True
    )
