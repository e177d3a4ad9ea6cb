"""The self-service limits (issue 30): sign-up starts and invitations, per address and per client address, counted in
the database (`ThrottleEvent`) so that they hold across workers. A step is written first and then counted with
everything written before it, so two workers at once cannot both slip under a limit; over a limit the step is
deleted again and `Throttled` raised (with the seconds until a step may pass). Steps older than a day are dropped."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from accounts.exceptions import Throttled
from accounts.models import ThrottleEvent

WINDOW = datetime.timedelta(hours=1)
KEPT = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Limit:
    by: str  # "address" or "client"
    per_hour: int
    message: str  # "{when}" is replaced by the wait in words


def count(kind: str, *, email: str, client_ip: str | None, limits: list[Limit]) -> ThrottleEvent:
    """Write one `kind` step for this address and client address, then hold it against each limit (an hour's
    window); `Throttled` when over one (the step is not kept)."""
    now = timezone.now()
    email_key = (email or "").strip().lower()
    event = ThrottleEvent.objects.create(kind=kind, email_key=email_key, client_ip=client_ip or None, created_at=now)
    for limit in limits:
        if limit.by == "client" and not client_ip:
            continue
        same = {"email_key": email_key} if limit.by == "address" else {"client_ip": client_ip}
        window = ThrottleEvent.objects.filter(kind=kind, created_at__gt=now - WINDOW, **same)
        if window.count() <= limit.per_hour:
            continue
        event.delete()
        oldest = window.order_by("created_at").values_list("created_at", flat=True).first()
        leaves = (oldest + WINDOW) if oldest is not None else now
        retry_after = max(1, math.ceil((leaves - now).total_seconds()))
        raise Throttled(limit.message.format(when=in_words(retry_after)), retry_after)
    ThrottleEvent.objects.filter(created_at__lt=now - KEPT).delete()
    return event


def in_words(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    return f"{math.ceil(seconds / 60)} minutes"


def count_signup_start(email: str, client_ip: str | None) -> ThrottleEvent:
    """One sign-up start (an address to prove for a new organization), held against the sign-up limits per address
    and per client address (`HOTCROSS_SIGNUPS_PER_ADDRESS_PER_HOUR`, `…_PER_CLIENT_PER_HOUR`); `Throttled` over
    one (nothing counted)."""
    limits = [
        Limit(
            "address",
            settings.HOTCROSS_SIGNUPS_PER_ADDRESS_PER_HOUR,
            "Too many sign-ups were started with this address. Try again in {when}.",
        ),
        Limit(
            "client",
            settings.HOTCROSS_SIGNUPS_PER_CLIENT_PER_HOUR,
            "Too many sign-ups were started from your network. Try again in {when}.",
        ),
    ]
    return count("signup", email=email, client_ip=client_ip, limits=limits)
