"""Stripe objects shaped like today's API (2025-03-31 and later: quantity and periods live on subscription items),
webhook events around them, and the `Stripe-Signature` header Stripe computes."""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

from tests.support.stripe_stub import API_VERSION

_ids = itertools.count(1)
NOW = 1_760_000_000  # a fixed "now" for created/period fields; signatures use the real clock


def _next(prefix: str) -> str:
    return f"{prefix}_test{next(_ids):08d}"


def product(name: str = "Hotcross API") -> dict[str, Any]:
    return {
        "id": _next("prod"),
        "object": "product",
        "active": True,
        "name": name,
        "description": None,
        "default_price": None,
        "images": [],
        "livemode": False,
        "metadata": {},
        "created": NOW - 86_400 * 30,
        "updated": NOW - 86_400 * 30,
        "type": "service",
        "url": None,
        "unit_label": None,
    }


def price(
    prod: dict[str, Any],
    metadata: dict[str, str] | None = None,
    *,
    unit_amount: int = 2000,
    usage_type: str = "licensed",
) -> dict[str, Any]:
    """A recurring price; `usage_type="metered"` for a usage-based one (its subscription items have no quantity)."""
    return {
        "id": _next("price"),
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": NOW - 86_400 * 30,
        "currency": "usd",
        "livemode": False,
        "lookup_key": None,
        "metadata": dict(metadata or {}),
        "nickname": None,
        "product": prod["id"],
        "recurring": {"interval": "month", "interval_count": 1, "meter": None, "usage_type": usage_type},
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def customer(email: str = "billing@acme.test", *, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": _next("cus"),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": NOW - 86_400 * 60,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": email,
        "invoice_prefix": "HC0001",
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None},
        "livemode": False,
        "metadata": dict(metadata or {}),
        "name": "Acme Corp",
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def subscription(
    cus: dict[str, Any],
    items: list[tuple[dict[str, Any], int | None]],
    *,
    status: str = "active",
    created: int | None = None,
) -> dict[str, Any]:
    """A subscription of `cus` with (price, quantity) items; quantity None for a metered price (Stripe omits it)."""
    sub_id = _next("sub")
    created = created if created is not None else NOW - 86_400
    return {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "automatic_tax": {"enabled": False, "liability": None},
        "billing_cycle_anchor": created,
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": "usd",
        "customer": cus["id"],
        "days_until_due": None,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "items": {
            "object": "list",
            "data": [_item(sub_id, p, q, created) for p, q in items],
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": {},
        "pause_collection": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": created,
        "status": status,
        "test_clock": None,
        "trial_end": None,
        "trial_start": None,
    }


def _item(sub_id: str, p: dict[str, Any], quantity: int | None, created: int) -> dict[str, Any]:
    item = {
        "id": _next("si"),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": created,
        "current_period_start": created,
        "current_period_end": created + 30 * 86_400,
        "discounts": [],
        "metadata": {},
        "plan": None,
        "price": copy.deepcopy(p),
        "quantity": quantity,
        "subscription": sub_id,
        "tax_rates": [],
    }
    if quantity is None:
        del item["quantity"]
    return item


def with_status(sub: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    changed = copy.deepcopy(sub)
    changed["status"] = status
    if status == "canceled":
        changed.update(canceled_at=NOW, ended_at=NOW)
    changed.update(extra)
    return changed


def with_quantities(sub: dict[str, Any], *quantities: int) -> dict[str, Any]:
    changed = copy.deepcopy(sub)
    for item, quantity in zip(changed["items"]["data"], quantities, strict=True):
        item["quantity"] = quantity
    return changed


def event(event_type: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    return {
        "id": _next("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created if created is not None else NOW,
        "data": {"object": copy.deepcopy(obj), "previous_attributes": {}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def signature(payload: str, secret: str, *, timestamp: int | None = None) -> str:
    """`Stripe-Signature`: t=…,v1=HMAC-SHA256(secret, "t.payload")."""
    timestamp = timestamp if timestamp is not None else int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))
