"""Developers' sign-in for OAuth consent and `/account/`: an emailed one-time code, or their API key.

Rules (issue 13): a 6-digit code, valid 10 minutes, 5 tries, resent at most `MAX_SENDS` times and not more often than
every `RESEND_SECONDS`; the same answer for an unknown address as for a customer's (a code row is made either way,
nothing is mailed for an unknown one); a developer whom the key check would refuse right now cannot sign in, and is
told why in the key check's words.

Limits (issue 26, item 2), the same for every address, a developer's or not, counted in the database
(`SignInEvent`) so that they hold across workers: codes made (starts and resends, each a mail for a developer's
address) per address and per client address per hour; codes tried per address and per client address per hour;
after a few wrong codes for an address, a wait before each further try that doubles with every wrong one. A new
start ends the address's earlier unused codes. Over a limit, `Throttled` (with the seconds to wait): no code is
made, none is tried, nothing is mailed. Each step is written first and then counted with everything written
before it, so two workers at once cannot both slip under a limit (one or both are refused). An address or a code
that cannot be one (a NUL, a control character, not an address, not six digits) is refused before any query.

Mails leave through `infra.mailer` (a thread of the process), after the answer (item 4).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import math
import re
import secrets
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count, F, Max
from django.utils import timezone

from accounts import credentials
from accounts.exceptions import KeyRefused
from accounts.models import Developer
from infra import mailer
from oauth.authentication import developer_standing
from oauth.models import SignInCode, SignInEvent

logger = logging.getLogger(__name__)

CODE_LIFETIME = datetime.timedelta(minutes=10)
MAX_ATTEMPTS = 5
MAX_SENDS = 3
RESEND_SECONDS = 30
WINDOW = datetime.timedelta(hours=1)  # the limits' counting window
FAILURE_WINDOW = datetime.timedelta(days=1)  # wrong codes that make a try wait; events are kept this long
CODE_PATTERN = re.compile(r"[0-9]{6}")

BAD_ADDRESS = "Enter the email address your organization registered for you."
JUNK_ADDRESS = "That email address has characters no address can have (such as a NUL or a line break). " + BAD_ADDRESS
BAD_CODE = "Enter the 6-digit code from the mail (digits only)."


class SignInRefused(Exception):
    """Sign-in refused; `str()` is the message for the page."""


class Throttled(SignInRefused):
    """Over one of the sign-in's limits: nothing was done; `retry_after` is the seconds until a try may work."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Started:
    code_id: int
    email: str  # as typed, cleaned


def clean_email(email: str) -> str:
    """The address as typed, without surrounding spaces; `SignInRefused` when it cannot be an email address."""
    email = (email or "").strip()
    if any(unicodedata.category(char).startswith("C") for char in email):
        raise SignInRefused(JUNK_ADDRESS)
    if len(email) > 254:
        raise SignInRefused(BAD_ADDRESS)
    try:
        validate_email(email)
    except ValidationError:
        raise SignInRefused(BAD_ADDRESS) from None
    return email


def clean_code(code: str) -> str:
    """Six ASCII digits (surrounding spaces dropped); `SignInRefused` otherwise."""
    code = (code or "").strip()
    if not CODE_PATTERN.fullmatch(code):
        raise SignInRefused(BAD_CODE)
    return code


def _hash(code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), code.encode(), hashlib.sha256).hexdigest()


def _new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


_PURPOSE_WORDS = {
    SignInCode.Purpose.SIGN_IN: "sign-in code",
    SignInCode.Purpose.SIGN_UP: "sign-up code",
    SignInCode.Purpose.INVITATION: "code to accept your invitation",
}


def _send_later(email: str, code: str, code_id: int, purpose: str = SignInCode.Purpose.SIGN_IN) -> None:
    what = _PURPOSE_WORDS.get(purpose, "code")
    mailer.send_later(
        mailer.Mail(
            subject=f"Your Hotcross {what}: {code}",
            message=(
                f"Your Hotcross {what} is {code}.\n\n"
                "It works for 10 minutes. If you did not ask for it, ignore this mail: nobody can use it without it."
            ),
            to=email,
            code_id=code_id,
        )
    )


# --- limits -----------------------------------------------------------------------------------------------------------


def _in_words(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    return f"{math.ceil(seconds / 60)} minutes"


def _count(kind: str, email_key: str, client_ip: str | None, limits: list[tuple[str, int, str]]) -> SignInEvent:
    """Write this step, then count it with the others of the window for each (`who`, limit, message); over a limit,
    the step is deleted again and `Throttled` raised."""
    now = timezone.now()
    event = SignInEvent.objects.create(
        kind=kind, email_key=email_key, client_ip=client_ip, wrong=kind == SignInEvent.Kind.GUESS, created_at=now
    )
    for who, limit, message in limits:
        same = {"email_key": email_key} if who == "address" else {"client_ip": client_ip}
        window = SignInEvent.objects.filter(kind=kind, created_at__gt=now - WINDOW, **same)
        if window.count() <= limit:
            continue
        event.delete()
        # the others must drop to limit - 1: the (others - limit + 1)th oldest leaves the window last
        others = list(window.order_by("created_at").values_list("created_at", flat=True)[: limit + 100])
        index = len(others) - limit
        if index < 0:  # others left meanwhile
            leaves = now
        else:
            leaves = others[index] + WINDOW if index < len(others) else now + WINDOW
        retry_after = max(1, math.ceil((leaves - now).total_seconds()))
        logger.info("sign-in throttled kind=%s by=%s retry_after=%s", kind, who, retry_after)
        raise Throttled(message.format(when=_in_words(retry_after)), retry_after)
    return event


def _count_code(email_key: str, client_ip: str | None) -> SignInEvent:
    return _count(
        SignInEvent.Kind.CODE,
        email_key,
        client_ip,
        [
            (
                "address",
                settings.HOTCROSS_SIGN_IN_MAILS_PER_ADDRESS_PER_HOUR,
                "Too many codes were asked for this address. Try again in {when}, or sign in with your API key.",
            ),
            (
                "client",
                settings.HOTCROSS_SIGN_IN_STARTS_PER_CLIENT_PER_HOUR,
                "Too many sign-in codes were asked from your network. Try again in {when}, or sign in with your API "
                "key.",
            ),
        ],
    )


def _count_guess(email_key: str, client_ip: str | None) -> SignInEvent:
    event = _count(
        SignInEvent.Kind.GUESS,
        email_key,
        client_ip,
        [
            (
                "address",
                settings.HOTCROSS_SIGN_IN_GUESSES_PER_ADDRESS_PER_HOUR,
                "Too many codes were tried for this address. Try again in {when}, or sign in with your API key.",
            ),
            (
                "client",
                settings.HOTCROSS_SIGN_IN_GUESSES_PER_CLIENT_PER_HOUR,
                "Too many codes were tried from your network. Try again in {when}, or sign in with your API key.",
            ),
        ],
    )
    wait = _failure_wait(event)
    if wait is not None:
        event.delete()
        retry_after = max(1, math.ceil(wait))
        logger.info("sign-in throttled kind=guess by=failures retry_after=%s", retry_after)
        raise Throttled(
            f"Too many wrong codes for this address: wait {_in_words(retry_after)} before the next try.", retry_after
        )
    return event


def _failure_wait(event: SignInEvent) -> float | None:
    """Seconds this try must still wait: after FREE_FAILURES wrong codes for the address (in a day, since its last
    right one), FAILURE_WAIT seconds after the last wrong one, doubled with every further wrong one (≤ MAX_WAIT).
    A try still being checked counts as wrong, so two at once wait for each other."""
    base = settings.HOTCROSS_SIGN_IN_FAILURE_WAIT_SECONDS
    if base <= 0:
        return None
    tries = SignInEvent.objects.filter(
        kind=SignInEvent.Kind.GUESS, email_key=event.email_key, created_at__gt=event.created_at - FAILURE_WINDOW
    ).exclude(pk=event.pk)
    last_right = tries.filter(wrong=False).aggregate(at=Max("created_at"))["at"]
    wrong = tries.filter(wrong=True)
    if last_right is not None:
        wrong = wrong.filter(created_at__gt=last_right)
    failures = wrong.aggregate(n=Count("id"), last=Max("created_at"))
    over = failures["n"] - settings.HOTCROSS_SIGN_IN_FREE_FAILURES
    if over < 0 or failures["last"] is None:
        return None
    wait = min(float(settings.HOTCROSS_SIGN_IN_MAX_WAIT_SECONDS), base * 2.0 ** min(over, 40))
    left = wait - (timezone.now() - failures["last"]).total_seconds()
    return left if left > 0 else None


# --- the steps --------------------------------------------------------------------------------------------------------


def start_email_sign_in(email: str, client_ip: str | None = None) -> Started:
    """Make a code for `email` and mail it (after the answer) when a developer has that address; the same for any
    address. `SignInRefused` for what cannot be an address, `Throttled` over a limit (nothing made or mailed)."""
    email = clean_email(email)
    email_key = email.lower()
    _count_code(email_key, client_ip)
    developer = Developer.objects.filter(email__iexact=email).first()
    row, code = _new_code_row(email, developer=developer)
    SignInEvent.objects.filter(created_at__lt=row.sent_at - FAILURE_WINDOW).delete()
    if developer is not None:
        _send_later(developer.email, code, row.pk)
    logger.info("sign-in code requested code_id=%s known=%s", row.pk, developer is not None)
    return Started(row.pk, email)


def start_address_proof(email: str, purpose: str, client_ip: str | None = None) -> Started:
    """Make a code that proves `email` for a sign-up or an invitation (`SignInCode.Purpose`) and mail it to that
    address, a developer's or not, within the same limits as a sign-in (`Throttled` over one: nothing made or mailed).
    A right code gives the address (`finish_address_proof`), never a developer's session."""
    if purpose == SignInCode.Purpose.SIGN_IN:
        raise ValueError("a sign-in proves a developer: use start_email_sign_in")
    email = clean_email(email)
    _count_code(email.lower(), client_ip)
    row, code = _new_code_row(email, purpose=purpose)
    _send_later(email, code, row.pk, purpose)
    logger.info("address proof code requested code_id=%s purpose=%s", row.pk, purpose)
    return Started(row.pk, email)


def finish_address_proof(code_id: int, code: str, purpose: str, client_ip: str | None = None) -> str:
    """The address (as typed, lower case) that the code proves, when it is right; `SignInRefused` otherwise,
    `Throttled` over a limit. The same tries, expiry and waits as a sign-in."""
    row = _right_code(
        purpose, code_id, code, client_ip, over="This code is over. Start again: enter your email address."
    )
    return row.email_key or row.email.lower()


def _new_code_row(
    email: str, *, developer: Developer | None = None, purpose: str = SignInCode.Purpose.SIGN_IN
) -> tuple[SignInCode, str]:
    """A new code for `email` (only its hash stored) and the code itself. One unused code per address: the earlier
    ones end (older ids only, so two starts at once leave the newer)."""
    code = _new_code()
    now = timezone.now()
    row = SignInCode.objects.create(
        email=email,
        email_key=email.lower(),
        developer=developer,
        purpose=purpose,
        code_hash=_hash(code),
        expires_at=now + CODE_LIFETIME,
        sent_at=now,
    )
    SignInCode.objects.filter(email_key=row.email_key, used_at=None, pk__lt=row.pk).delete()
    return row, code


def _right_code(purpose: str, code_id: int, code: str, client_ip: str | None, *, over: str) -> SignInCode:
    """The unused code row `code_id` of `purpose` when `code` is right (tries, time and waits allowing), now used;
    `SignInRefused` otherwise (`over` when there is no such row), `Throttled` over a limit. The try is counted even
    when the answer is a refusal (raised after the commit)."""
    code = clean_code(code)
    codes = SignInCode.objects.filter(purpose=purpose)
    row = codes.filter(pk=code_id, used_at=None).first()
    if row is None:
        raise SignInRefused(over)
    event = _count_guess(row.email_key or row.email.lower(), client_ip)
    with transaction.atomic():
        row = codes.select_for_update().filter(pk=code_id, used_at=None).first()
        error = _try_code(row, code)
    if error is not None:
        raise SignInRefused(error)
    SignInEvent.objects.filter(pk=event.pk).update(wrong=False)
    return row


def _resend_problem(row: SignInCode | None, now: datetime.datetime) -> str | None:
    if row is None:
        return "Start again: enter your email address."
    if row.sends >= MAX_SENDS:
        return "No more codes for this sign-in: start again in a few minutes."
    if (now - row.sent_at).total_seconds() < RESEND_SECONDS:
        return f"Wait {RESEND_SECONDS} seconds before asking for another code."
    return None


def resend_code(code_id: int, client_ip: str | None = None) -> str:
    """Mail a new code for the same sign-in (the old one stops). Returns what the page says; `Throttled` over a
    limit (nothing changed or mailed)."""
    row = SignInCode.objects.filter(pk=code_id, used_at=None).first()
    problem = _resend_problem(row, timezone.now())
    if problem is not None:
        return problem
    event = _count_code(row.email_key or row.email.lower(), client_ip)
    with transaction.atomic():
        row = SignInCode.objects.select_for_update().filter(pk=code_id, used_at=None).first()
        now = timezone.now()
        problem = _resend_problem(row, now)
        if problem is not None:
            event.delete()
            return problem
        code = _new_code()
        row.code_hash, row.sent_at, row.sends, row.attempts = _hash(code), now, row.sends + 1, 0
        row.expires_at = now + CODE_LIFETIME
        row.save(update_fields=["code_hash", "sent_at", "sends", "attempts", "expires_at"])
        developer, purpose = row.developer, row.purpose
    if purpose != SignInCode.Purpose.SIGN_IN:
        _send_later(row.email, code, row.pk, purpose)
        return "A new code is on its way."
    if developer is not None:
        _send_later(developer.email, code, row.pk)
    return "If this address belongs to a Hotcross developer, a new code is on its way."


def finish_email_sign_in(code_id: int, code: str, client_ip: str | None = None) -> Developer:
    """The developer, when `code` is right (and tries, time and their standing allow); `SignInRefused` otherwise,
    `Throttled` over a limit (the try not counted against the code)."""
    row = _right_code(
        SignInCode.Purpose.SIGN_IN,
        code_id,
        code,
        client_ip,
        over="This sign-in is over. Start again: enter your email address.",
    )
    developer = row.developer
    _require_standing(developer)
    return developer


def _try_code(row: SignInCode | None, code: str) -> str | None:
    """Why `code` does not pass for `row` (a try counted), or None when it does (the row is then used)."""
    if row is None:
        return "This sign-in is over. Start again: enter your email address."
    if row.attempts >= MAX_ATTEMPTS:
        return "Too many wrong codes. Start again: enter your email address."
    if row.expires_at <= timezone.now():
        return "This code has expired (codes work for 10 minutes). Start again."
    SignInCode.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)
    proves_developer = row.purpose == SignInCode.Purpose.SIGN_IN
    if (proves_developer and row.developer_id is None) or not hmac.compare_digest(row.code_hash, _hash(code)):
        left = MAX_ATTEMPTS - row.attempts - 1
        if left <= 0:
            return "Too many wrong codes. Start again: enter your email address."
        return f"That code is not right. {left} tr{'y' if left == 1 else 'ies'} left."
    SignInCode.objects.filter(pk=row.pk).update(used_at=timezone.now())
    return None


def sign_in_with_key(raw_key: str) -> Developer:
    """The developer whose key this is, when the key check accepts it; `SignInRefused` with its message otherwise."""
    try:
        principal = credentials.authenticate(raw_key, kinds=credentials.KEYS_ONLY).principal
    except KeyRefused as refusal:
        raise SignInRefused(f"{refusal.message} ({refusal.code})") from None
    return Developer.objects.get(pk=principal.developer_id)


def _require_standing(developer: Developer) -> None:
    """A developer whom the key check would refuse cannot sign in; an active owner or admin can (to manage the
    organization on /org/, with or without a seat of their own, paid for or not yet)."""
    if developer.is_active and developer.manages:
        return
    refusal = developer_standing(developer.pk)
    if refusal is not None:
        raise SignInRefused(f"{refusal.message} ({refusal.code})")


def standing_message(developer: Developer) -> str | None:
    refusal = developer_standing(developer.pk)
    return None if refusal is None else f"{refusal.message} ({refusal.code})"
