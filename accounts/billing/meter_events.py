"""The Stripe side of usage billing: send one meter event, read an upcoming invoice. Nothing here touches our database.

Meter events go through the `stripe` library dj-stripe pins (`stripe.billing.MeterEvent.create`), with the key of
`accounts.billing.config.secret_key()` and the library's `api_base` (set from `STRIPE_API_HOST`). Stripe keeps an
event's `identifier` unique for at least 24 hours and answers a second event with the same identifier with a 400
("An event already exists with identifier …"): that answer means the event was accepted before, and is reported as
`DUPLICATE`, not as an error.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings

from accounts.billing.config import StripeUnavailable, describe_error, secret_key

# Stripe takes meter events timestamped within the past 35 days and up to 5 minutes ahead.
OLDEST_ACCEPTED = datetime.timedelta(days=35)
NEWEST_ACCEPTED = datetime.timedelta(minutes=5)
# Kept clear of the edge: a request in flight must not cross it.
MARGIN = datetime.timedelta(hours=1)


class Sent(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # Stripe holds an event with this identifier already: accepted earlier


class MeterEventError(Exception):
    """Stripe did not take the event. `retryable`: a network error, 429 or 5xx (try again later); otherwise Stripe
    refused it (a bad customer, meter or key) and it is sent again only once that is fixed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class MeterEventRequest:
    event_name: str
    stripe_customer_id: str
    value: int
    identifier: str
    timestamp: datetime.datetime


def within_stripe_window(timestamp: datetime.datetime, now: datetime.datetime) -> bool:
    """Whether Stripe still takes a meter event with this timestamp (with a margin of an hour on the old side)."""
    return now - OLDEST_ACCEPTED + MARGIN <= timestamp <= now + NEWEST_ACCEPTED


def send_meter_event(event: MeterEventRequest) -> Sent:
    """POST /v1/billing/meter_events once. Raises `MeterEventError` (retryable or not) when Stripe did not take it."""
    try:
        api_key = secret_key()
    except StripeUnavailable as exc:
        raise MeterEventError(exc.message, retryable=False) from None
    try:
        stripe.billing.MeterEvent.create(
            api_key=api_key,
            event_name=event.event_name,
            payload={"stripe_customer_id": event.stripe_customer_id, "value": str(event.value)},
            identifier=event.identifier,
            timestamp=int(event.timestamp.timestamp()),
        )
    except stripe.StripeError as exc:
        if is_duplicate_identifier(exc):
            return Sent.DUPLICATE
        raise MeterEventError(describe(exc), retryable=is_retryable(exc)) from None
    return Sent.ACCEPTED


def is_duplicate_identifier(exc: stripe.StripeError) -> bool:
    """Stripe's answer to an identifier it has seen: 400 invalid_request_error, "An event already exists with
    identifier …"."""
    if not isinstance(exc, stripe.InvalidRequestError):
        return False
    message = (exc.user_message or str(exc) or "").lower()
    return "already exists" in message and "identifier" in message


def is_retryable(exc: stripe.StripeError) -> bool:
    """Network errors, 429 (rate limited), 409 (a concurrent request) and 5xx: the same request may succeed later."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = exc.http_status or 0
    return status in (409, 429) or status >= 500


def describe(exc: stripe.StripeError) -> str:
    status = f"HTTP {exc.http_status}: " if exc.http_status else ""
    return f"Stripe: {status}{describe_error(exc)}"


# --- the upcoming invoice ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: int | None
    amount: int  # in the currency's smallest unit
    currency: str

    @property
    def amount_display(self) -> str:
        return UpcomingInvoice.money(self.amount, self.currency)


@dataclass(frozen=True)
class UpcomingInvoice:
    currency: str
    total: int
    amount_due: int
    period_start: datetime.datetime | None
    period_end: datetime.datetime | None
    next_payment_attempt: datetime.datetime | None
    lines: list[InvoiceLine]

    @staticmethod
    def money(amount: int, currency: str) -> str:
        return f"{amount / 100:,.2f} {currency.upper()}"

    @property
    def total_display(self) -> str:
        return self.money(self.total, self.currency)

    @property
    def amount_due_display(self) -> str:
        return self.money(self.amount_due, self.currency)


def upcoming_invoice(customer_id: str, *, timeout: float | None = None) -> UpcomingInvoice:
    """The customer's next invoice as Stripe would draw it now (`POST /v1/invoices/create_preview`).
    `StripeUnavailable` (in words, never the key) when no key is configured or Stripe cannot be asked."""
    api_key = secret_key()
    # A page waits for this answer: its own client, with a bounded timeout and no retry (the process-wide client of
    # `configure_client` is left alone, other threads use it).
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": stripe.api_base},
        max_network_retries=0,
        http_client=stripe.new_default_http_client(
            timeout=float(timeout if timeout is not None else settings.STRIPE_TIMEOUT_SECONDS)
        ),
    )
    try:
        invoice = client.v1.invoices.create_preview({"customer": customer_id})
    except stripe.StripeError as exc:
        raise StripeUnavailable(f"The upcoming invoice could not be read: {describe_error(exc)}") from None
    return _invoice(invoice)


def _invoice(invoice: Any) -> UpcomingInvoice:
    lines = []
    for line in (invoice.get("lines") or {}).get("data") or []:
        lines.append(
            InvoiceLine(
                description=str(line.get("description") or ""),
                quantity=line.get("quantity"),
                amount=int(line.get("amount") or 0),
                currency=str(line.get("currency") or invoice.get("currency") or "usd"),
            )
        )
    return UpcomingInvoice(
        currency=str(invoice.get("currency") or "usd"),
        total=int(invoice.get("total") or 0),
        amount_due=int(invoice.get("amount_due") or 0),
        period_start=_time(invoice.get("period_start")),
        period_end=_time(invoice.get("period_end")),
        next_payment_attempt=_time(invoice.get("next_payment_attempt")),
        lines=lines,
    )


def _time(value: Any) -> datetime.datetime | None:
    return datetime.datetime.fromtimestamp(int(value), tz=datetime.UTC) if value else None
