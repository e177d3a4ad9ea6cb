"""Seats and the pricing model from a subscription's items and their prices' metadata. Pure: no database, no Stripe
(but for a price that the item names by id only, whose synced copy is read).

Since Stripe's API 2025-03-31 the quantity lives on the subscription's items (dj-stripe's `Subscription.quantity`
reads the old top-level field). A price says what it is in its metadata:

    hotcross_pricing = per_seat       seats = the item's quantity (also: a price without Hotcross metadata)
    hotcross_pricing = flat           seats = hotcross_seats × quantity (hotcross_seats alone also means flat)
    hotcross_pricing = base           no seats (the base fee of a hybrid plan, or any add-on, metered ones too)
    hotcross_pricing = per_developer  one seat: an organization of one developer

Items add up: a hybrid plan (base + per_seat) has the per-seat quantity.

The plan (issue 16): `hotcross_plan = <code>` on a price, else on its product (`plan_code`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from djstripe.models import Price, Product

from accounts.exceptions import InvalidInput
from accounts.models import MAX_SEATS, PricingModel

PRICING_KEY = "hotcross_pricing"
SEATS_KEY = "hotcross_seats"
PLAN_KEY = "hotcross_plan"  # the code of the plan (issue 16), on a price or else its product


class PriceKind(StrEnum):
    PER_SEAT = "per_seat"
    FLAT = "flat"
    BASE = "base"
    PER_DEVELOPER = "per_developer"


class PriceMetadataError(InvalidInput):
    """A price's Hotcross metadata cannot be read; the seats stay as they were until the price is fixed."""

    code = "price_metadata"


@dataclass(frozen=True, slots=True)
class SeatPlan:
    seats: int
    pricing_model: str


def seat_plan(items: Iterable[Mapping[str, Any]]) -> SeatPlan:
    """Seats and pricing model for a subscription's items (today's API shape). Raises `PriceMetadataError`."""
    seats = 0
    kinds: set[PriceKind] = set()
    count = 0
    for item in items:
        count += 1
        price = _price_of(item)
        price_id = price.get("id") or "(no id)"
        metadata = price.get("metadata") or {}
        kind = _kind_of(price_id, metadata)
        kinds.add(kind)
        if kind is PriceKind.PER_SEAT:
            seats += _quantity(item, price, price_id)
        elif kind is PriceKind.FLAT:
            per_unit = _whole_number(metadata.get(SEATS_KEY), what=f"{SEATS_KEY} of the flat price {price_id}")
            seats += per_unit * _quantity(item, price, price_id)
    if not count:
        raise PriceMetadataError("The subscription has no items, so it says nothing about seats.")
    if seats > MAX_SEATS:
        raise PriceMetadataError(f"The subscription adds up to {seats} seats, more than the {MAX_SEATS} possible.")
    if PriceKind.PER_DEVELOPER in kinds:
        if kinds & {PriceKind.PER_SEAT, PriceKind.FLAT}:
            raise PriceMetadataError(
                "The subscription mixes a per_developer price with seat prices; a per-developer organization has "
                "exactly one seat."
            )
        return SeatPlan(seats=1, pricing_model=PricingModel.PER_DEVELOPER)
    if PriceKind.BASE in kinds:
        return SeatPlan(seats=seats, pricing_model=PricingModel.HYBRID)
    return SeatPlan(seats=seats, pricing_model=PricingModel.PER_ORGANIZATION)


def _kind_of(price_id: str, metadata: Mapping[str, Any]) -> PriceKind:
    raw = metadata.get(PRICING_KEY)
    has_seats = metadata.get(SEATS_KEY) not in (None, "")
    if raw in (None, ""):
        # A seat count alone says "flat"; silently counting such a price per seat would hand out the wrong seats.
        return PriceKind.FLAT if has_seats else PriceKind.PER_SEAT
    try:
        kind = PriceKind(str(raw).strip().lower())
    except ValueError:
        raise PriceMetadataError(
            f"Price {price_id} has {PRICING_KEY}={raw!r}; use one of: {', '.join(PriceKind)}."
        ) from None
    if has_seats and kind is not PriceKind.FLAT:
        raise PriceMetadataError(
            f"Price {price_id} has {PRICING_KEY}={kind} and {SEATS_KEY}={metadata.get(SEATS_KEY)!r}; a seat count "
            f"belongs only on a {PriceKind.FLAT} price."
        )
    return kind


def _quantity(item: Mapping[str, Any], price: Mapping[str, Any], price_id: str) -> int:
    if (price.get("recurring") or {}).get("usage_type") == "metered":
        raise PriceMetadataError(
            f"Price {price_id} is metered, so it has no quantity to count seats by; give it {PRICING_KEY}="
            f"{PriceKind.BASE} if it adds no seats."
        )
    if "quantity" not in item:
        return 1  # Stripe's default
    return _whole_number(item["quantity"], what=f"The quantity of price {price_id}")


def _price_of(item: Mapping[str, Any]) -> Mapping[str, Any]:
    price = item.get("price") or item.get("plan") or {}
    if isinstance(price, str):
        # Not expanded: fall back to dj-stripe's synced copy of the price.
        synced = Price.objects.filter(id=price).first()
        if synced is None:
            return {"id": price, "metadata": {}}
        return {
            "id": price,
            "metadata": synced.metadata or {},
            "recurring": synced.stripe_data.get("recurring"),
            "product": synced.stripe_data.get("product"),
        }
    return price


def _whole_number(value: Any, *, what: str) -> int:
    if value is None or value == "":
        raise PriceMetadataError(f"{what} is missing.")
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        number = int(value.strip())
    else:
        raise PriceMetadataError(f"{what} must be a whole number, not {value!r}.")
    if number < 0:
        raise PriceMetadataError(f"{what} must be 0 or more, not {number}.")
    return number


# --- the plan (issue 16) -----------------------------------------------------------------------------------------


def plan_code(items: Iterable[Mapping[str, Any]]) -> str | None:
    """The plan a subscription names: `hotcross_plan=<code>` in a price's metadata, else in its product's. None when
    no item names one (the plan stays as staff set it). Raises `PriceMetadataError` when items name different plans.
    Whether a plan has that code is for the caller (`accounts.services.plans.apply_plan_code`)."""
    codes = set()
    for item in items:
        price = _price_of(item)
        code = str((price.get("metadata") or {}).get(PLAN_KEY) or "").strip()
        if not code:
            code = str((_product_metadata(price.get("product")) or {}).get(PLAN_KEY) or "").strip()
        if code:
            codes.add(code)
    if len(codes) > 1:
        raise PriceMetadataError(
            f"The subscription's prices name several plans ({', '.join(sorted(codes))}) in {PLAN_KEY}; name one."
        )
    return codes.pop() if codes else None


def _product_metadata(product: Any) -> Mapping[str, Any] | None:
    if isinstance(product, Mapping):
        return product.get("metadata") or {}
    if isinstance(product, str) and product:
        synced = Product.objects.filter(id=product).first()  # not expanded: dj-stripe's synced copy
        return synced.metadata if synced is not None else None
    return None
