"""The mails owners get about their organization (issue 30 item 5), each at most once per period:

- `cap_80` / `cap_100`: the organization has made 80 % / all of its monthly calls (`accounts.plans.cap`: calls per
  seat × seats), once each per UTC month. Checked after usage is written (`accounts.services.usage`): `after_usage` /
  `aafter_usage` ask each process's `CapGate` first, which lets an organization through at most once per
  `HOTCROSS_ALERT_CHECK_SECONDS` and not at all once this month's 100 % mail is known sent; the check itself is one
  query for the whole batch (plus the writes of a mail when a threshold is crossed). A 100 % mail makes the 80 % one
  pointless: an organization past 80 % again after its cap grew is not told 80 % after 100 %.
- `past_due`: the subscription became past due (a payment failed), at most once per UTC day.
- `seats_short`: seats were lowered below the seat holders, so the newest are refused (`seat_limit_exceeded`); the
  mail names them. At most once per UTC day per organization: a second drop the same day is not mailed (the /org/
  pages and the admin show who is refused).

"Once" is the unique `AlertSent(organization, kind, period)` row: it is inserted first, inside the caller's
transaction (a savepoint); an `IntegrityError` means the mail was already sent, and nothing is mailed. The mails go
to the organization's active owners (to `billing_email` when it has none), through `infra.mailer` once the
transaction commits, never inside a Stripe call.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import monthly_use, plans
from accounts.choices import AlertKind, AtCap, Role, SubscriptionStatus
from accounts.models import AlertSent, Developer, Organization
from accounts.selectors import seat_holders_beyond, seats_in_use
from accounts.wording import newest_refused, plural
from infra import mailer
from infra.db import BOOKKEEPING, is_database_outage, run_in_pool

logger = logging.getLogger(__name__)

# The seat holders a `seats_short` mail names; the others are counted.
NAMED_IN_MAIL = 50
DEFAULT_CHECK_SECONDS = 30.0


def month_period(now: datetime.datetime | None = None) -> str:
    """The period of the cap alerts: the UTC month, `2026-12`."""
    return plans.month_start(now or timezone.now()).strftime("%Y-%m")


def day_period(now: datetime.datetime | None = None) -> str:
    """The period of the other alerts: the UTC day, `2026-12-07`."""
    return (now or timezone.now()).astimezone(datetime.UTC).strftime("%Y-%m-%d")


# --- the per-process gate before the cap check ------------------------------------------------------------------------


def check_seconds() -> float:
    return max(0.0, float(getattr(settings, "HOTCROSS_ALERT_CHECK_SECONDS", DEFAULT_CHECK_SECONDS)))


class CapGate:
    """Which organizations of a usage batch this process checks now: each at most once per `check_seconds()`, none
    whose 100 % mail this month is known sent. Memory only (no query); thread-safe; forgets everything past
    100 000 organizations."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._next: dict[str, float] = {}  # organization id → no check before this (monotonic)
        self._known: set[tuple[str, str, str]] = set()  # (organization id, kind, period) known sent
        self._lock = threading.Lock()

    def due(self, organization_ids: Iterable[Any], period: str) -> list[Any]:
        now = time.monotonic()
        interval = check_seconds()
        due = []
        with self._lock:
            if len(self._next) > self.LIMIT or len(self._known) > self.LIMIT:
                self._next.clear()
                self._known.clear()
            for organization_id in dict.fromkeys(organization_ids):
                key = str(organization_id)  # ids come as UUIDs or as text
                if (key, AlertKind.CAP_100, period) in self._known:
                    continue
                if self._next.get(key, 0.0) > now:
                    continue
                self._next[key] = now + interval
                due.append(organization_id)
        return due

    def known(self, organization_id: Any, kind: str, period: str) -> bool:
        return (str(organization_id), kind, period) in self._known

    def note(self, organization_id: Any, kind: str, period: str) -> None:
        """Remember that this alert was sent, once the transaction commits (a rolled-back one sent nothing)."""

        def remember() -> None:
            with self._lock:
                self._known.add((str(organization_id), kind, period))

        transaction.on_commit(remember)

    def clear(self) -> None:
        with self._lock:
            self._next.clear()
            self._known.clear()


gate = CapGate()


def after_usage(organization_ids: Iterable[Any]) -> None:
    """After usage of these organizations was written (sync callers): the cap check of those the gate lets through.
    Never raises: the usage is written whatever happens here (a failure is logged)."""
    due = gate.due(organization_ids, month_period())
    if due:
        _check_quietly(due)


async def aafter_usage(organization_ids: Iterable[Any]) -> None:
    """`after_usage` for async callers: the check of those the gate lets through runs on the bookkeeping threads, in
    a task of its own, so the caller (metering's flush) does not wait for it (`settle()` waits, for tests)."""
    due = gate.due(organization_ids, month_period())
    if due:
        task = asyncio.get_running_loop().create_task(_acheck(due))
        _checks.add(task)
        task.add_done_callback(_checks.discard)


async def settle() -> None:
    """Wait for the cap checks `aafter_usage` started on this event loop."""
    loop = asyncio.get_running_loop()
    running = [task for task in _checks if task.get_loop() is loop]
    if running:
        await asyncio.gather(*running, return_exceptions=True)


_checks: set[asyncio.Task] = set()


async def _acheck(organization_ids: list[Any]) -> None:
    try:
        await run_in_pool(BOOKKEEPING, _check_quietly, organization_ids)
    except Exception as exc:  # the database cannot be reached: a later batch checks again
        _not_checked(organization_ids, exc)


def _check_quietly(organization_ids: list[Any]) -> None:
    # In a savepoint of its own: a failure here never breaks the caller's transaction (the reported-usage API's).
    try:
        with transaction.atomic():
            check_caps(organization_ids)
    except Exception as exc:
        _not_checked(organization_ids, exc)


def _not_checked(organization_ids: list[Any], exc: BaseException) -> None:
    """Log a check that failed: a database outage in one line (a later batch checks again; the house rule for
    outages: no traceback), anything else with its traceback (a mistake to fix)."""
    if is_database_outage(exc):
        logger.warning(
            "monthly cap alerts not checked: %s organization(s), the database did not answer (%s)",
            len(organization_ids),
            type(exc).__name__,
        )
    else:
        logger.warning("monthly cap alerts not checked: %s organization(s)", len(organization_ids), exc_info=True)


# --- the checks -------------------------------------------------------------------------------------------------------


def check_caps(organization_ids: Iterable[Any], now: datetime.datetime | None = None) -> list[AlertSent]:
    """Mail the owners of each of these organizations that has crossed 80 % or 100 % of its monthly cap and was not
    told this month. One query reads them all; a crossing adds the alert's writes. Returns the alerts sent."""
    now = now or timezone.now()
    period = month_period(now)
    rows = monthly_use.with_monthly_use(Organization.objects.filter(pk__in=list(organization_ids)), now).only(
        "id", "name", "max_seats", "plan_id", "billing_email"
    )
    sent = []
    for organization in rows:
        terms = plans.terms_for(organization.plan_id)
        cap = terms.monthly_cap(organization.max_seats)
        used = organization.calls_this_month
        state = monthly_use.cap_state(used, cap) if used > 0 else ""
        if not state:
            continue
        kind = AlertKind.CAP_100 if state == "reached" else AlertKind.CAP_80
        if gate.known(organization.pk, kind, period):
            continue
        if kind == AlertKind.CAP_80 and (
            gate.known(organization.pk, AlertKind.CAP_100, period)
            or AlertSent.objects.filter(organization=organization, kind=AlertKind.CAP_100, period=period).exists()
        ):
            gate.note(organization.pk, AlertKind.CAP_100, period)
            continue
        alert = send_once(
            organization,
            kind,
            period,
            lambda o=organization, k=kind, u=used, c=cap, t=terms: _cap_mail(o, k, u, c, t, now),
            now=now,
        )
        gate.note(organization.pk, kind, period)
        if alert is not None:
            sent.append(alert)
    return sent


def past_due(organization: Organization, now: datetime.datetime | None = None) -> AlertSent | None:
    """The subscription just became past due: mail the owners, at most once per UTC day. Call it inside the
    transaction that wrote the status. None when already sent today."""
    keys_stop = SubscriptionStatus.PAST_DUE not in settings.HOTCROSS_ALLOWED_STATUSES
    consequence = (
        "Until the payment goes through, your developers' keys are refused (subscription_inactive)."
        if keys_stop
        else "Your developers' keys keep working while Stripe tries the payment again; if it keeps failing, the "
        "subscription ends and the keys stop."
    )
    message = (
        f"A payment for {organization.name}'s Hotcross subscription failed: the subscription is past due.\n\n"
        f"{consequence}\n\n"
        f"Update the payment method or pay the open invoice from the billing page:\n{mailer.link('/org/billing/')}\n"
        f"{_footer(organization)}"
    )
    subject = f"Payment failed for {organization.name} on Hotcross"
    return send_once(organization, AlertKind.PAST_DUE, day_period(now), lambda: (subject, message), now=now)


def seats_short(organization: Organization, seats: int, now: datetime.datetime | None = None) -> AlertSent | None:
    """Seats were lowered to `seats`, below the seat holders: mail the owners who is refused, at most once per UTC
    day per organization. Call it inside the transaction that wrote the seats. None when nobody is refused or the
    mail was already sent today."""
    used = seats_in_use(organization)
    if used <= seats:
        return None

    def compose() -> tuple[str, str]:
        named = list(seat_holders_beyond(organization, seats).values_list("email", flat=True)[:NAMED_IN_MAIL])
        more = used - seats - len(named)
        names = "\n".join(f"- {email}" for email in named) + (f"\n- and {more} more" if more > 0 else "")
        count = used - seats
        subject = (
            f"{organization.name}: {'a member is' if count == 1 else f'{count} members are'} refused for lack of seats"
        )
        message = (
            f"{organization.name} now has {plural(seats, 'seat')} and {used} seat holders: "
            f"{newest_refused(used, seats)} (seat_limit_exceeded) until seats are added or freed.\n\n"
            f"Refused now:\n{names}\n\n"
            f"Add seats on the billing page:\n{mailer.link('/org/billing/')}\n"
            f"or free seats by removing members who no longer need one:\n{mailer.link('/org/')}\n"
            f"{_footer(organization)}"
        )
        return subject, message

    return send_once(organization, AlertKind.SEATS_SHORT, day_period(now), compose, now=now)


# --- sending once -----------------------------------------------------------------------------------------------------


def recipients(organization: Organization) -> list[str]:
    """The organization's active owners' addresses; its billing address when it has no owner; [] when neither."""
    owners = list(
        Developer.objects.filter(organization_id=organization.pk, role=Role.OWNER, is_active=True)
        .order_by("email")
        .values_list("email", flat=True)
    )
    if owners:
        return owners
    return [organization.billing_email] if organization.billing_email else []


def send_once(
    organization: Organization,
    kind: str,
    period: str,
    compose: Callable[[], tuple[str, str]],
    *,
    now: datetime.datetime | None = None,
) -> AlertSent | None:
    """Record the alert `(organization, kind, period)` and mail it (`compose()`: subject and text, asked only then) to
    `recipients()` once the transaction commits; None (nothing mailed) when that alert was already recorded."""
    try:
        with transaction.atomic():
            alert = AlertSent.objects.create(
                organization_id=organization.pk, kind=kind, period=period, sent_at=now or timezone.now()
            )
    except IntegrityError:
        return None
    to = recipients(organization)
    if to:
        AlertSent.objects.filter(pk=alert.pk).update(recipients=len(to))
        alert.recipients = len(to)
    else:
        logger.warning(
            "alert not mailed, no owner and no billing address organization=%s kind=%s", organization.pk, kind
        )
    subject, message = compose()
    mails = [mailer.Mail(subject=subject, message=message, to=address, kind="alert") for address in to]
    transaction.on_commit(lambda: [mailer.send_later(mail) for mail in mails], robust=True)
    logger.info(
        "alert recorded organization=%s kind=%s period=%s recipients=%s", organization.pk, kind, period, len(to)
    )
    return alert


# --- the words --------------------------------------------------------------------------------------------------------


def _footer(organization: Organization) -> str:
    return f"\nYou get this mail as an owner of {organization.name} on Hotcross."


def _cap_mail(
    organization: Organization, kind: str, used: int, cap: int, terms: plans.PlanTerms, now: datetime.datetime
) -> tuple[str, str]:
    month_ends = plans.month_start(plans.month_start(now) + datetime.timedelta(days=32))
    ends = f"{month_ends:%Y-%m-%d} 00:00 UTC"
    basis = (
        f"the plan {terms.label}: {terms.monthly_calls_per_seat:,} calls per seat × "
        f"{plural(organization.max_seats, 'seat')}"
    )
    refuse = terms.at_cap != AtCap.OVERAGE
    if kind == AlertKind.CAP_100:
        subject = f"{organization.name} has reached its monthly cap of {cap:,} calls on Hotcross"
        figure = f"{organization.name} has made {used:,} calls this month; its cap is {cap:,} ({basis})."
        then = (
            f"Further calls are refused (monthly_cap_reached) until the month ends ({ends}), or until you add seats "
            "or change plan."
            if refuse
            else "Calls go on: those beyond the cap are billed as overage on your next invoice."
        )
    else:
        percent = used * 100 // cap
        subject = f"{organization.name} has used {percent} % of its monthly calls on Hotcross"
        figure = f"{organization.name} has made {used:,} of its {cap:,} calls this month ({percent} %; {basis})."
        then = (
            f"Once the cap is reached, further calls are refused (monthly_cap_reached) until the month ends ({ends}), "
            "or until you add seats or change plan."
            if refuse
            else "Once the cap is reached, calls go on and those beyond it are billed as overage."
        )
    message = (
        f"{figure}\n\n{then}\n\n"
        f"This month's usage, per member and per tool:\n{mailer.link('/org/usage/')}\n"
        f"Seats and plan:\n{mailer.link('/org/billing/')}\n"
        f"{_footer(organization)}"
    )
    return subject, message
