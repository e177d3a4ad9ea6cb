"""Stripe → organizations: dj-stripe syncs Stripe's objects, this module maps a synced subscription to its organization.

dj-stripe receives the webhook, checks its signature, stores the event and re-fetches the subscription from the
Stripe API. Only then do our receivers run, and they read that freshly synced copy, never the event body: events
arrive twice, late and out of order, and the organization must end in Stripe's *current* state.

The organization is found by its Stripe customer id (dj-stripe leaves `Customer.subscriber` empty for customers made
outside this app). When a customer has several subscriptions, the one in best standing decides (see
`STATUS_STANDING`). Status, subscription id and seats are written through `accounts.services`, so the seat rules and
the admin history are the same as for staff.

Seats come from the subscription's items and their prices' metadata (API 2025-03-31 moved `quantity` onto the
items; dj-stripe's `Subscription.quantity` reads the old top-level field):

    hotcross_pricing = per_seat       seats = the item's quantity (also: a price without Hotcross metadata)
    hotcross_pricing = flat           seats = hotcross_seats × quantity (hotcross_seats alone also means flat)
    hotcross_pricing = base           no seats (the base fee of a hybrid plan, or any add-on, metered ones too)
    hotcross_pricing = per_developer  one seat: an organization of one developer

Items add up: a hybrid plan (base + per_seat) has the per-seat quantity. Metadata that cannot be read (an unknown
value, a seat count on a price that is not flat, a metered price without `base`) leaves the seats as they were and
is logged: a webhook must not fail for it, since Stripe's retries would not fix a price.
"""

from __future__ import annotations

import datetime
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import stripe
from django.conf import settings
from django.core import checks
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.urls import reverse
from djstripe import signals as djstripe_signals
from djstripe.enums import WebhookEndpointStatus
from djstripe.exceptions import InvalidStripeAPIKey
from djstripe.models import Event, Price, Subscription, WebhookEndpoint, WebhookEventTrigger
from djstripe.models.api import get_api_key_details_by_prefix
from djstripe.settings import djstripe_settings

from accounts import services
from accounts.exceptions import AccountsError, InvalidInput, NotFound
from accounts.models import STATUS_STANDING, Organization, PricingModel, SubscriptionStatus

logger = logging.getLogger(__name__)

PRICING_KEY = "hotcross_pricing"
SEATS_KEY = "hotcross_seats"
MAX_SEATS = 2**31 - 1  # `Organization.max_seats` (PositiveIntegerField) holds no more on any database

# The webhook events that can change a subscription's status, items or quantities.
SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
    "customer.subscription.trial_will_end",
)


class PriceKind(StrEnum):
    PER_SEAT = "per_seat"
    FLAT = "flat"
    BASE = "base"
    PER_DEVELOPER = "per_developer"


class PriceMetadataError(InvalidInput):
    """A price's Hotcross metadata cannot be read; the seats stay as they were until the price is fixed."""

    code = "price_metadata"


class StripeUnavailable(AccountsError):
    """Stripe could not be asked (no key configured, network, authentication, unknown customer)."""

    code = "stripe_unavailable"


@dataclass(frozen=True, slots=True)
class SeatPlan:
    seats: int
    pricing_model: str


@dataclass(frozen=True, slots=True)
class Applied:
    """What a subscription did to its organization. `problem` says why something was left as it was."""

    organization: Organization
    subscription_id: str
    status: str
    seats: int | None
    problem: str = ""


# --- seats from prices (pure) ----------------------------------------------------------------------------------------


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
        return {"id": price, "metadata": synced.metadata or {}, "recurring": synced.stripe_data.get("recurring")}
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


# --- the mapping -----------------------------------------------------------------------------------------------------


def apply_subscription(subscription: Subscription, *, actor: Any = None) -> Applied | None:
    """Bring the organization of this synced subscription's customer in line with Stripe. Idempotent.

    Reads dj-stripe's synced copies (re-fetched from the API), never an event body. The customer's subscription in
    best standing decides, so the result does not depend on which subscription's event came last. Returns None when
    no organization has the customer id (logged; nothing is written).
    """
    customer_id = subscription.customer_id
    with transaction.atomic():
        # Locked first: concurrent deliveries for one customer decide and write one after the other.
        organization = Organization.objects.select_for_update().filter(stripe_customer_id=customer_id).first()
        if organization is None:
            logger.warning(
                "stripe subscription %s belongs to customer %s, which no organization has: ignored",
                subscription.id,
                customer_id,
            )
            return None
        deciding = best_standing(Subscription.objects.filter(customer_id=customer_id))
        return _apply(organization, deciding or subscription, actor=actor)


def best_standing(subscriptions: Iterable[Subscription]) -> Subscription | None:
    """The subscription whose status ranks best in `STATUS_STANDING`; the newest wins a tie."""
    rank = {status: position for position, status in enumerate(STATUS_STANDING)}

    def key(sub: Subscription) -> tuple[int, float, str]:
        created = sub.created.timestamp() if sub.created else 0.0
        return (rank.get(sub.status, len(rank)), -created, sub.id)

    return min(subscriptions, key=key, default=None)


def _apply(organization: Organization, subscription: Subscription, *, actor: Any) -> Applied:
    status = subscription.status or ""
    problems = []
    if status in SubscriptionStatus.values:
        _through_services(
            problems,
            services.set_status,
            organization=organization,
            status=status,
            subscription_id=subscription.id,
            actor=actor,
        )
    else:
        problems.append(f"Stripe status {status!r} is unknown here; the status was left as it was.")
    seats = None
    try:
        plan = seat_plan((subscription.stripe_data.get("items") or {}).get("data") or [])
    except PriceMetadataError as exc:
        problems.append(f"{exc.message} The seats were left as they were.")
    else:
        if _through_services(
            problems, services.set_seats, organization=organization, max_seats=plan.seats, actor=actor
        ):
            seats = plan.seats
        if organization.pricing_model != plan.pricing_model:
            _through_services(
                problems,
                services.update_organization,
                organization=organization,
                pricing_model=plan.pricing_model,
                actor=actor,
            )
    for problem in problems:
        logger.error(
            "stripe subscription %s of organization %s not fully applied: %s", subscription.id, organization.pk, problem
        )
    return Applied(
        organization=organization,
        subscription_id=subscription.id,
        status=organization.subscription_status,
        seats=seats,
        problem=" ".join(problems),
    )


def _through_services(problems: list[str], service: Callable[..., Any], **kwargs: Any) -> bool:
    """Call a service; a refusal (the organization's own data fails validation, say) becomes a logged problem.

    A webhook answered 500 is retried by Stripe for days, and a retry cannot fix our data: what Stripe could change
    is applied, the rest waits for staff (and `orgs sync-stripe`).
    """
    try:
        with transaction.atomic():
            service(**kwargs)
    except AccountsError as exc:
        problems.append(f"{exc.message} ({service.__name__} refused it.)")
        kwargs["organization"].refresh_from_db()  # a refused service may have changed the instance, not the row
        return False
    return True


def sync_from_stripe(organization: Organization, *, actor: Any = None) -> Applied:
    """Re-fetch the organization's subscriptions from the Stripe API and re-apply them (for missed webhooks)."""
    if not organization.stripe_customer_id:
        raise InvalidInput(f"{organization.name} has no Stripe customer id, so there is nothing to sync.")
    api_key = djstripe_settings.STRIPE_SECRET_KEY
    customer_id = organization.stripe_customer_id
    try:
        get_api_key_details_by_prefix(api_key)  # an empty or malformed key would still be sent to Stripe
        with transaction.atomic():
            # Locked before asking Stripe, as for a webhook (`_hold_organization`): a delivery that reads a newer
            # state meanwhile writes after this sync, not before it.
            locked = Organization.objects.select_for_update().filter(pk=organization.pk).first()
            if locked is None:
                raise NotFound(f"The organization {organization.name} ({organization.pk}) no longer exists.")
            customer_id = locked.stripe_customer_id
            if not customer_id:
                raise InvalidInput(f"{locked.name} has no Stripe customer id, so there is nothing to sync.")
            # dj-stripe lists every status (`status=all`); Stripe's default would leave canceled ones out.
            synced = [
                Subscription.sync_from_stripe_data(data, api_key=api_key)
                for data in Subscription.api_list(customer=customer_id, api_key=api_key)
            ]
            deciding = best_standing(synced)
            applied = apply_subscription(deciding, actor=actor) if deciding is not None else None
    except InvalidStripeAPIKey:
        # dj-stripe's own message quotes a malformed key; a secret is never printed.
        raise StripeUnavailable(_key_problem() or "The Stripe API key was refused.") from None
    except stripe.StripeError as exc:
        raise StripeUnavailable(
            f"Stripe did not answer for {organization.name} (customer {customer_id}): {_describe_stripe_error(exc)}"
        ) from None
    if deciding is None:
        organization.refresh_from_db()
        return Applied(
            organization=organization,
            subscription_id=organization.subscription_id,
            status=organization.subscription_status,
            seats=None,
            problem=f"Stripe has no subscription for customer {customer_id}; nothing was changed.",
        )
    if applied is None:  # cannot happen while the row is locked; kept so a change there fails loudly
        raise NotFound(f"No organization has the Stripe customer id {customer_id} any more.")
    return applied


def _describe_stripe_error(exc: stripe.StripeError) -> str:
    if isinstance(exc, stripe.APIConnectionError):
        return f"could not connect to {stripe.api_base}."
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        mode = "LIVE" if djstripe_settings.STRIPE_LIVE_MODE else "TEST"
        return f"the API key was refused (check STRIPE_{mode}_SECRET_KEY)."
    return exc.user_message or exc.__class__.__name__


# --- configuration --------------------------------------------------------------------------------------------------

# What dj-stripe accepts as a secret key of each mode (a publishable pk_ key cannot read subscriptions).
_KEY_PATTERNS = {
    "STRIPE_TEST_SECRET_KEY": re.compile(r"(sk|rk)_test_[A-Za-z0-9]{24,}"),
    "STRIPE_LIVE_SECRET_KEY": re.compile(r"(sk|rk)_live_[A-Za-z0-9]{24,}"),
}


def _key_setting(live: bool | None = None) -> str:
    live = bool(djstripe_settings.STRIPE_LIVE_MODE) if live is None else live
    return "STRIPE_LIVE_SECRET_KEY" if live else "STRIPE_TEST_SECRET_KEY"


def _malformed_keys() -> list[str]:
    return [
        name
        for name, pattern in _KEY_PATTERNS.items()
        if getattr(settings, name, "") and not pattern.fullmatch(getattr(settings, name))
    ]


def _key_problem(live: bool | None = None) -> str:
    """What is wrong with the key of this mode (default: STRIPE_LIVE_MODE's), naming the setting, never the value."""
    name = _key_setting(live)
    if not getattr(settings, name, ""):
        return f"No Stripe API key configured: set {name}."
    if name in _malformed_keys():
        mode = "live" if name == "STRIPE_LIVE_SECRET_KEY" else "test"
        return f"{name} is not a Stripe {mode}-mode secret key (sk_{mode}_… or rk_{mode}_…); its value is not shown."
    return ""


@checks.register()
def check_stripe_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A key that is set must be usable: otherwise every webhook fails with 500 and Stripe retries for days."""
    return [
        checks.Error(
            f"{name} is set but is not a Stripe {name.split('_')[1].lower()}-mode secret key; its value is not shown.",
            hint="Copy the secret key (sk_… or a restricted rk_… key) of the right mode from the Stripe dashboard.",
            id="accounts.E101",
        )
        for name in _malformed_keys()
    ]


@checks.register(deploy=True)
def check_stripe_key_for_the_mode(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    name = _key_setting()
    if getattr(settings, name, ""):
        return []
    return [
        checks.Warning(
            f"{name} is empty (STRIPE_LIVE_MODE is {bool(djstripe_settings.STRIPE_LIVE_MODE)}): Stripe webhooks will "
            "fail with HTTP 500 and `orgs sync-stripe` will refuse until it is set.",
            hint=f"Set {name} in the environment.",
            id="accounts.W101",
        )
    ]


# --- dj-stripe signal receivers --------------------------------------------------------------------------------------


def _require_usable_key(sender: Any, instance: WebhookEventTrigger, **kwargs: Any) -> None:
    """Before dj-stripe calls Stripe for a verified event, refuse an unusable key with a message naming its setting.

    dj-stripe would fail too (HTTP 500, so Stripe retries), but its message quotes a malformed key, and that message
    is logged and stored on the trigger row.
    """
    if hasattr(settings, "STRIPE_SECRET_KEY"):  # dj-stripe's override of both keys; not how this project is set up
        return
    endpoint = instance.webhook_endpoint
    problem = _key_problem(live=bool(endpoint.livemode) if endpoint is not None else None)
    if problem:
        raise StripeUnavailable(problem)


def _hold_organization(sender: Any, instance: WebhookEventTrigger, **kwargs: Any) -> None:
    """Before dj-stripe re-fetches a subscription, lock its organization until the webhook's transaction ends.

    Without it two concurrent deliveries could fetch in one order and write in the other, leaving an older state.
    The body is only signed, not well-formed: any shape is looked at without failing.
    """
    body = instance.json_body
    if not isinstance(body, dict) or body.get("type") not in SUBSCRIPTION_EVENTS:
        return
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    customer_id = obj.get("customer") if isinstance(obj, dict) else None
    if isinstance(customer_id, str) and customer_id:
        list(Organization.objects.select_for_update().filter(stripe_customer_id=customer_id).values_list("pk"))


def _subscription_event(sender: Any, event: Event, **kwargs: Any) -> None:
    """After dj-stripe synced the event's subscription from the API: apply that synced copy."""
    subscription_id = ((event.data or {}).get("object") or {}).get("id")
    subscription = Subscription.objects.filter(id=subscription_id).first() if subscription_id else None
    if subscription is None:
        # dj-stripe skips objects Stripe no longer has; there is nothing current to apply.
        logger.warning(
            "stripe event %s (%s): subscription %s not synced, ignored", event.id, event.type, subscription_id
        )
        return
    apply_subscription(subscription)


djstripe_signals.webhook_pre_process.connect(
    _require_usable_key, sender=WebhookEventTrigger, dispatch_uid="accounts.billing.require_usable_key"
)
djstripe_signals.webhook_pre_process.connect(
    _hold_organization, sender=WebhookEventTrigger, dispatch_uid="accounts.billing.hold_organization"
)
for _event_type in SUBSCRIPTION_EVENTS:
    djstripe_signals.WEBHOOK_SIGNALS[_event_type].connect(
        _subscription_event, sender=Event, dispatch_uid=f"accounts.billing.{_event_type}"
    )


# --- webhook endpoints -----------------------------------------------------------------------------------------------

_SECRET_PATTERN = re.compile(r"whsec_[A-Za-z0-9+/=_-]{8,200}")
LOCAL_BASE_URL = "http://127.0.0.1:8000"


def webhook_path(endpoint: WebhookEndpoint) -> str:
    return reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": endpoint.djstripe_uuid})


def save_webhook_endpoint(
    *, secret: str, url: str | None = None, replace_secret: bool = True
) -> tuple[WebhookEndpoint, bool]:
    """Create or update a webhook endpoint row without calling Stripe. Returns (endpoint, created).

    `url` is where Stripe posts. With a `/stripe/webhook/<uuid>/` path, that uuid names the endpoint; otherwise it is
    the site's address (default: the local development server, for `stripe listen`) and the endpoint already
    registered under it is updated, or a new one is made. `replace_secret=False` leaves an existing endpoint's
    secret as it is (the demo seeding must not undo a secret set for `stripe listen`).
    """
    secret = (secret or "").strip()
    if not _SECRET_PATTERN.fullmatch(secret):
        raise InvalidInput("The signing secret must look like whsec_… (Stripe shows it on the endpoint's page).")
    url = (url or LOCAL_BASE_URL).strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise InvalidInput(f"'{url}' is not an http(s) URL.") from None
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc.lower(), "", "", ""))  # host names ignore case
    nil = uuid.UUID(int=0)
    prefix = reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": nil}).removesuffix(f"{nil}/")
    named = re.fullmatch(re.escape(prefix) + r"([0-9a-fA-F-]{36})/?", parts.path)
    if not named and parts.path not in ("", "/"):
        raise InvalidInput(
            f"Give the site's address ({base}) or an endpoint's full URL ({base}{prefix}<uuid>/), not '{url}'."
        )
    livemode = bool(djstripe_settings.STRIPE_LIVE_MODE)
    with transaction.atomic():
        if named:
            try:
                endpoint_uuid = uuid.UUID(named.group(1))
            except ValueError:
                raise InvalidInput(f"'{named.group(1)}' in the URL is not a uuid.") from None
            endpoint = WebhookEndpoint.objects.select_for_update().filter(djstripe_uuid=endpoint_uuid).first()
        else:
            endpoint_uuid = uuid.uuid4()
            endpoints = list(
                WebhookEndpoint.objects.select_for_update().filter(url__startswith=base + prefix, livemode=livemode)
            )
            if len(endpoints) > 1:
                raise InvalidInput(
                    f"{len(endpoints)} endpoints are registered under {base}; name one with its full URL "
                    f"({base}{prefix}<uuid>/)."
                )
            endpoint = endpoints[0] if endpoints else None
        created = endpoint is None
        if created:
            endpoint = WebhookEndpoint(
                id=f"we_local_{endpoint_uuid.hex}",
                djstripe_uuid=endpoint_uuid,
                livemode=livemode,
                enabled_events=list(SUBSCRIPTION_EVENTS),
                status=WebhookEndpointStatus.enabled,
                api_version=djstripe_settings.STRIPE_API_VERSION,
                stripe_data={},
                created=datetime.datetime.now(tz=datetime.UTC),
            )
        if created or replace_secret:
            endpoint.secret = secret
        endpoint.url = base + webhook_path(endpoint)
        endpoint.save()
    logger.info(
        "stripe webhook endpoint %s id=%s url=%s", "created" if created else "updated", endpoint.id, endpoint.url
    )
    return endpoint, created
