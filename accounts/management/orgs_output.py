"""What `manage.py orgs` prints: the `--json` shapes of an organization and a developer (a contract scripts rely on),
and the text tables, with names escaped so that nothing they hold can act on the operator's terminal."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

from accounts.models import Developer, Organization


def organization_data(org: Organization, seats_used: int) -> dict[str, Any]:
    return {
        "id": str(org.id),
        "name": org.name,
        "stripe_customer_id": org.stripe_customer_id,
        "subscription_id": org.subscription_id or None,
        "subscription_status": org.subscription_status,
        "max_seats": org.max_seats,
        "seats_in_use": seats_used,
        "over_seat_limit": seats_used > org.max_seats,
        "pricing_model": org.pricing_model,
        "billing_email": org.billing_email or None,
        "created_at": _iso(org.created_at),
    }


def developer_data(dev: Developer) -> dict[str, Any]:
    return {
        "id": str(dev.id),
        "organization_id": str(dev.organization_id),
        "email": dev.email,
        "first_name": dev.first_name,
        "last_name": dev.last_name,
        "api_key_prefix": dev.api_key_prefix,
        "is_active": dev.is_active,
        "key_state": dev.key_state,
        "api_key_created_at": _iso(dev.api_key_created_at),
        "api_key_revoked_at": _iso(dev.api_key_revoked_at),
        "api_key_last_used_at": _iso(dev.api_key_last_used_at),
        "api_key_expires_at": _iso(dev.api_key_expires_at),
        "old_key_works_until": _iso(_old_key_works_until(dev)),
    }


def _old_key_works_until(dev: Developer) -> datetime.datetime | None:
    """When the key a rotation with a grace period replaced stops working (lists annotate it: no query each)."""
    if not hasattr(dev, "old_key_works_until"):
        dev.old_key_works_until = Developer.objects.with_old_key_grace().get(pk=dev.pk).old_key_works_until
    return dev.old_key_works_until


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def short_time(value: datetime.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


ORG_COLUMNS = ("ID", "NAME", "STATUS", "SEATS", "PRICING", "STRIPE CUSTOMER")
DEV_COLUMNS = ("ID", "EMAIL", "NAME", "KEY", "STATE", "LAST USED", "ORGANIZATION")


def org_row(org: Organization, seats_used: int) -> tuple[str, ...]:
    seats = f"{seats_used}/{org.max_seats}" + (" OVER" if seats_used > org.max_seats else "")
    return (str(org.id), org.name, org.subscription_status, seats, org.pricing_model, org.stripe_customer_id or "—")


def dev_row(dev: Developer) -> tuple[str, ...]:
    old_key_until = getattr(dev, "old_key_works_until", None)
    return (
        str(dev.id),
        dev.email,
        dev.full_name or "—",
        f"{dev.api_key_prefix}…" if dev.api_key_prefix else "—",
        dev.key_state + (f" (old key until {short_time(old_key_until)})" if old_key_until else ""),
        short_time(dev.api_key_last_used_at),
        dev.organization.name,
    )


def printable(text: str) -> str:
    """`text` with control and other invisible characters written as escapes (`\\x1b`, `\\n`), so a name cannot
    clear the operator's screen, move the cursor or forge a row of the table."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def terminal_text(text: str) -> str:
    """Text for the terminal, each line `printable` (names are escaped where written; this catches the rest)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def format_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [tuple(columns), *(tuple(printable(cell) for cell in row) for row in rows)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
