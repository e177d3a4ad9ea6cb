"""Developers' sign-in for OAuth consent and `/account/`: an emailed one-time code, or their API key.

Rules (issue 13): a 6-digit code, valid 10 minutes, 5 tries, resent at most `MAX_SENDS` times and not more often than
every `RESEND_SECONDS`; the same answer for an unknown address as for a customer's (a code row is made either way,
nothing is mailed for an unknown one); a developer whom the key check would refuse right now cannot sign in, and is
told why in the key check's words.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.authentication import authenticate_key
from accounts.exceptions import KeyRefused
from accounts.models import Developer
from oauth.authentication import developer_standing
from oauth.models import SignInCode

logger = logging.getLogger(__name__)

CODE_LIFETIME = datetime.timedelta(minutes=10)
MAX_ATTEMPTS = 5
MAX_SENDS = 3
RESEND_SECONDS = 30


class SignInRefused(Exception):
    """Sign-in refused; `str()` is the message for the page."""


@dataclass(frozen=True)
class Started:
    code_id: int


def _hash(code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), code.encode(), hashlib.sha256).hexdigest()


def _new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def _send(email: str, code: str) -> None:
    send_mail(
        subject=f"Your Hotcross sign-in code: {code}",
        message=(
            f"Your Hotcross sign-in code is {code}.\n\n"
            "It works for 10 minutes. If you did not ask for it, ignore this mail: nobody can sign in without it."
        ),
        from_email=None,
        recipient_list=[email],
    )


def start_email_sign_in(email: str) -> Started:
    """Make a code for `email` and mail it when a developer has that address. The same for any address."""
    email = (email or "").strip()
    developer = Developer.objects.filter(email__iexact=email).first() if email else None
    code = _new_code()
    now = timezone.now()
    row = SignInCode.objects.create(
        email=email[:254],
        developer=developer,
        code_hash=_hash(code),
        expires_at=now + CODE_LIFETIME,
        sent_at=now,
    )
    if developer is not None:
        _send(developer.email, code)
    logger.info("sign-in code requested code_id=%s known=%s", row.pk, developer is not None)
    return Started(row.pk)


def resend_code(code_id: int) -> str:
    """Mail a new code for the same sign-in (the old one stops). Returns what the page says."""
    with transaction.atomic():
        row = SignInCode.objects.select_for_update().filter(pk=code_id, used_at=None).first()
        if row is None:
            return "Start again: enter your email address."
        now = timezone.now()
        if row.sends >= MAX_SENDS:
            return "No more codes for this sign-in: start again in a few minutes."
        if (now - row.sent_at).total_seconds() < RESEND_SECONDS:
            return f"Wait {RESEND_SECONDS} seconds before asking for another code."
        code = _new_code()
        row.code_hash, row.sent_at, row.sends, row.attempts = _hash(code), now, row.sends + 1, 0
        row.expires_at = now + CODE_LIFETIME
        row.save(update_fields=["code_hash", "sent_at", "sends", "attempts", "expires_at"])
        developer = row.developer
    if developer is not None:
        _send(developer.email, code)
    return "If this address belongs to a Hotcross developer, a new code is on its way."


def finish_email_sign_in(code_id: int, code: str) -> Developer:
    """The developer, when `code` is right (and tries, time and their standing allow); `SignInRefused` otherwise."""
    code = (code or "").strip()
    with transaction.atomic():  # the try is counted even when the answer is a refusal (raised after the commit)
        row = SignInCode.objects.select_for_update().filter(pk=code_id, used_at=None).first()
        error, developer = _try_code(row, code)
    if error is not None:
        raise SignInRefused(error)
    _require_standing(developer)
    return developer


def _try_code(row: SignInCode | None, code: str) -> tuple[str | None, Developer | None]:
    if row is None:
        return "This sign-in is over. Start again: enter your email address.", None
    if row.attempts >= MAX_ATTEMPTS:
        return "Too many wrong codes. Start again: enter your email address.", None
    if row.expires_at <= timezone.now():
        return "This code has expired (codes work for 10 minutes). Start again.", None
    SignInCode.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)
    if row.developer_id is None or not hmac.compare_digest(row.code_hash, _hash(code)):
        left = MAX_ATTEMPTS - row.attempts - 1
        if left <= 0:
            return "Too many wrong codes. Start again: enter your email address.", None
        return f"That code is not right. {left} tr{'y' if left == 1 else 'ies'} left.", None
    SignInCode.objects.filter(pk=row.pk).update(used_at=timezone.now())
    return None, row.developer


def sign_in_with_key(raw_key: str) -> Developer:
    """The developer whose key this is, when the key check accepts it; `SignInRefused` with its message otherwise."""
    try:
        principal = authenticate_key(raw_key)
    except KeyRefused as refusal:
        raise SignInRefused(f"{refusal.message} ({refusal.code})") from None
    return Developer.objects.get(pk=principal.developer_id)


def _require_standing(developer: Developer) -> None:
    refusal = developer_standing(developer.pk)
    if refusal is not None:
        raise SignInRefused(f"{refusal.message} ({refusal.code})")


def standing_message(developer: Developer) -> str | None:
    refusal = developer_standing(developer.pk)
    return None if refusal is None else f"{refusal.message} ({refusal.code})"
