"""A small local stand-in for the Stripe API: the endpoints dj-stripe 2.11 calls while it syncs a subscription.

It holds current-API-shaped objects (account, customers, subscriptions with their items, products, prices) and
serves them as Stripe does: `GET /v1/<collection>/<id>`, the subscription list of a customer (with Stripe's `status`
filter: canceled ones only when asked for), a product's features.
Tests change what it holds to say "this is Stripe's state now", then deliver (possibly stale) webhook events.

Usage billing: `POST /v1/billing/meter_events` keeps meter events as Stripe does (an identifier seen before is
answered 400 "An event already exists with identifier …"; a timestamp outside the past 35 days / next 5 minutes is
refused), and `POST /v1/invoices/create_preview` draws a customer's upcoming invoice from the events it holds
(`unit_amounts`: cents per unit, by event name). `fail_next(path, status, …)` makes the next requests for a path fail
(after keeping the event, if asked: the answer lost on its way back).

Self-service (issue 30): `POST /v1/customers` (an `Idempotency-Key` seen before answers the first answer again),
Checkout Sessions (`POST /v1/checkout/sessions`, `GET /v1/checkout/sessions/<id>`) whose `url` is a page on the
stub (`GET /checkout/<id>`: the quantity within the adjustable bounds and "Pay"; `POST /checkout/<id>` makes the
subscription, completes the session, sends `customer.subscription.created` and `checkout.session.completed`, and
redirects to the success URL), Billing Portal sessions (`POST /v1/billing_portal/sessions`; `GET /portal/<id>` shows
the subscription's quantity, `POST /portal/<id>` changes it, sends `customer.subscription.updated` and redirects to the
return URL). Every event the stub makes is kept in `events`, and POSTed signed to the webhook target when one was
given (`deliver_webhooks_to(url, secret)`); `delivered` holds the answers' statuses.

Every request is recorded. A request for anything else is answered 404 and kept in `unexpected`, so a test can
assert dj-stripe asked for nothing we did not foresee.
"""

from __future__ import annotations

import copy
import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ACCOUNT_ID = "acct_hotcrosstest"
API_VERSION = "2025-03-31.basil"

_COLLECTIONS = {
    "customers": "customer",
    "subscriptions": "subscription",
    "products": "product",
    "prices": "price",
}


def _listed(status: str, wanted: str | None) -> bool:
    """Stripe's `status` filter of the subscription list: without one, canceled subscriptions are left out."""
    if wanted is None:
        return status != "canceled"
    if wanted == "all":
        return True
    if wanted == "ended":
        return status in ("canceled", "incomplete_expired")
    return status == wanted


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str
    idempotency_key: str = ""


@dataclass
class Hold:
    """Keeps the next answer for one path waiting: `arrived` is set once Stripe's state has been read for it,
    `release()` sends it."""

    path: str
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class Failure:
    status: int
    after_accepting: bool = False  # the request takes effect, then the answer is an error


METER_EVENTS = "/v1/billing/meter_events"
INVOICE_PREVIEW = "/v1/invoices/create_preview"
CUSTOMERS = "/v1/customers"
CHECKOUT_SESSIONS = "/v1/checkout/sessions"
PORTAL_SESSIONS = "/v1/billing_portal/sessions"
METER_WINDOW_PAST = 35 * 24 * 3600
METER_WINDOW_FUTURE = 5 * 60


class StripeStub:
    def __init__(self) -> None:
        self._objects: dict[str, dict[str, Any]] = {}
        self.meter_events: dict[str, dict[str, Any]] = {}  # by identifier, in arrival order
        self.meter_event_posts: list[str] = []  # the identifier of every POST, accepted or not
        self.unit_amounts: dict[str, int] = {}  # cents per unit of a meter's value, by event name
        self.base_lines: dict[str, list[dict[str, Any]]] = {}  # a customer's flat invoice lines
        self._failures: dict[str, list[Failure]] = {}
        self._lock = threading.Lock()
        self._holds: dict[str, Hold] = {}
        self.requests: list[Request] = []
        self.unexpected: list[Request] = []
        self.events: list[dict[str, Any]] = []  # every webhook event the stub made, in order
        self.delivered: list[int] = []  # the webhook target's answers
        self._webhook_target: tuple[str, str] | None = None
        self._idempotent: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self._line_items: dict[str, list[dict[str, Any]]] = {}  # a checkout session's, by session id
        self._ids = 0
        self._idempotency_lock = threading.Lock()
        self.put(
            {
                "id": ACCOUNT_ID,
                "object": "account",
                "type": "standard",
                "country": "US",
                "default_currency": "usd",
                "email": "billing@hotcross.test",
                "charges_enabled": True,
                "payouts_enabled": True,
                "details_submitted": True,
                "business_profile": {"name": "Hotcross (test)"},
                "settings": {"dashboard": {"display_name": "Hotcross (test)"}, "branding": {}},
                "metadata": {},
                "created": 1_700_000_000,
            }
        )
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll: `stop()` waits for the serving loop to look (0.5 s by default, paid by every test using it).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="stripe-stub", daemon=True
        )

    # --- lifecycle ---

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StripeStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        for hold in list(self._holds.values()):
            hold.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- state ---

    def put(self, *objects: dict[str, Any]) -> None:
        """Make these objects Stripe's current state (replacing any with the same id)."""
        with self._lock:
            for obj in objects:
                self._objects[obj["id"]] = copy.deepcopy(obj)

    def get(self, object_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._objects[object_id])

    def deliver_webhooks_to(self, url: str, secret: str) -> None:
        """POST every event the stub makes from now on to `url`, signed with `secret` as Stripe signs."""
        self._webhook_target = (url, secret)

    def checkout_sessions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects.values() if o.get("object") == "checkout.session"]

    def customers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects.values() if o.get("object") == "customer"]

    def subscriptions_of(self, customer_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(o)
                for o in self._objects.values()
                if o.get("object") == "subscription" and o.get("customer") == customer_id
            ]

    def requested(self, path_prefix: str = "/v1/") -> list[str]:
        return [r.path for r in self.requests if r.path.startswith(path_prefix)]

    def forget_requests(self) -> None:
        self.requests.clear()
        self.unexpected.clear()

    def fail_next(self, path: str, *statuses: int, after_accepting: bool = False) -> None:
        """The next requests for `path` are answered with these statuses (500, 429…), one each; 200 answers one as
        usual."""
        with self._lock:
            self._failures.setdefault(path, []).extend(Failure(s, after_accepting) for s in statuses)

    def accepted_values(self, customer: str | None = None) -> dict[str, int]:
        """Accepted meter events' values by identifier (for one customer, or all)."""
        with self._lock:
            return {
                identifier: int(event["payload"]["value"])
                for identifier, event in self.meter_events.items()
                if customer is None or event["payload"]["stripe_customer_id"] == customer
            }

    @contextmanager
    def holding(self, path: str) -> Iterator[Hold]:
        """The next request for `path` reads Stripe's state when it arrives, then waits for `release()`."""
        hold = Hold(path)
        self._holds[path] = hold
        try:
            yield hold
        finally:
            hold.release()
            self._holds.pop(path, None)

    # --- serving ---

    def _answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        with self._lock:
            failures = self._failures.get(request.path)
            failure = failures.pop(0) if failures else None
        if failure is not None and failure.status == 200:
            failure = None  # a 200 in the list: this request is answered as usual
        if failure is not None:
            if failure.after_accepting:
                self._answer_route(request)
            return failure.status, _error(failure.status)
        return self._answer_route(request)

    def _answer_route(self, request: Request) -> tuple[int, dict[str, Any]]:
        if request.method == "POST" and request.path == METER_EVENTS:
            return self._meter_event(request)
        if request.method == "POST" and request.path == INVOICE_PREVIEW:
            return self._invoice_preview(request)
        if request.method == "POST" and request.path in (CUSTOMERS, CHECKOUT_SESSIONS, PORTAL_SESSIONS):
            make = {
                CUSTOMERS: self._create_customer,
                CHECKOUT_SESSIONS: self._create_checkout_session,
                PORTAL_SESSIONS: self._create_portal_session,
            }[request.path]
            return self._idempotently(request, make)
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and parts[:3] == ["v1", "checkout", "sessions"] and len(parts) == 4:
            return self._checkout_session(request, parts[3])
        if request.method != "GET" or not parts or parts[0] != "v1":
            return self._missing(request, "route")
        parts = parts[1:]
        with self._lock:
            if parts == ["account"]:
                return 200, copy.deepcopy(self._objects[ACCOUNT_ID])
            if parts == ["subscriptions"]:
                customer = (request.query.get("customer") or [None])[0]
                status = (request.query.get("status") or [None])[0]
                found = [
                    copy.deepcopy(o)
                    for o in self._objects.values()
                    if o.get("object") == "subscription"
                    and (customer is None or o.get("customer") == customer)
                    and _listed(o["status"], status)
                ]
                if customer is not None and customer not in self._objects:
                    return self._missing(request, "customer", customer)
                return 200, {"object": "list", "data": found, "has_more": False, "url": "/v1/subscriptions"}
            if len(parts) == 3 and parts[0] == "products" and parts[2] == "features":
                url = f"/v1/products/{parts[1]}/features"
                return 200, {"object": "list", "data": [], "has_more": False, "url": url}
            if len(parts) == 2 and parts[0] in _COLLECTIONS:
                obj = self._objects.get(parts[1])
                if obj is not None and obj.get("object") == _COLLECTIONS[parts[0]]:
                    return 200, copy.deepcopy(obj)
                return self._missing(request, _COLLECTIONS[parts[0]], parts[1], expected=True)
        return self._missing(request, "route")

    def _meter_event(self, request: Request) -> tuple[int, dict[str, Any]]:
        """Stripe's checks on a meter event: the fields, the timestamp's window, the identifier's uniqueness."""

        def one(name: str) -> str | None:
            return (request.query.get(name) or [None])[0]

        event_name, customer, value = one("event_name"), one("payload[stripe_customer_id]"), one("payload[value]")
        identifier = one("identifier") or f"stub-{time.time_ns()}"
        now = int(time.time())
        timestamp = int(one("timestamp") or now)
        with self._lock:
            self.meter_event_posts.append(identifier)
            if not event_name or not customer or value is None:
                return 400, _invalid(
                    "Missing required param: event_name, payload[stripe_customer_id] or payload[value]."
                )
            if not now - METER_WINDOW_PAST <= timestamp <= now + METER_WINDOW_FUTURE:
                return 400, _invalid("Timestamp must be within the past 35 days and not more than 5 minutes ahead.")
            if identifier in self.meter_events:
                return 400, _invalid(f"An event already exists with identifier {identifier}.")
            event = {
                "object": "billing.meter_event",
                "created": now,
                "event_name": event_name,
                "identifier": identifier,
                "livemode": False,
                "payload": {"stripe_customer_id": customer, "value": value},
                "timestamp": timestamp,
            }
            self.meter_events[identifier] = event
            return 200, copy.deepcopy(event)

    def _invoice_preview(self, request: Request) -> tuple[int, dict[str, Any]]:
        """The customer's upcoming invoice: its flat lines plus one line per meter, from the accepted events."""
        customer = (request.query.get("customer") or [None])[0]
        with self._lock:
            if not customer or customer not in self._objects:
                return self._missing(request, "customer", customer or "", expected=True)
            now = int(time.time())
            lines = [copy.deepcopy(line) for line in self.base_lines.get(customer, [])]
            usage: dict[str, int] = {}
            for event in self.meter_events.values():
                if event["payload"]["stripe_customer_id"] == customer:
                    usage[event["event_name"]] = usage.get(event["event_name"], 0) + int(event["payload"]["value"])
            for event_name, quantity in sorted(usage.items()):
                unit = self.unit_amounts.get(event_name, 1)
                lines.append(
                    {"description": f"{quantity} × {event_name}", "quantity": quantity, "amount": unit * quantity}
                )
        data = [
            {
                "id": f"il_tmp_stub{index}",
                "object": "line_item",
                "amount": line["amount"],
                "currency": "usd",
                "description": line["description"],
                "quantity": line.get("quantity"),
                "period": {"start": now - 86400, "end": now + 86400},
                "livemode": False,
                "metadata": {},
            }
            for index, line in enumerate(lines)
        ]
        total = sum(line["amount"] for line in data)
        return 200, {
            "id": None,
            "object": "invoice",
            "customer": customer,
            "currency": "usd",
            "status": "draft",
            "livemode": False,
            "subtotal": total,
            "total": total,
            "amount_due": total,
            "period_start": now - 86400,
            "period_end": now + 86400,
            "next_payment_attempt": now + 86400,
            "lines": {"object": "list", "data": data, "has_more": False, "url": "/v1/invoices/upcoming/lines"},
        }

    # --- self-service: customers, Checkout, the Billing Portal ---

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}_stub{time.time_ns() % 10**9:09d}{self._ids:04d}"

    def _idempotently(self, request: Request, make: Any) -> tuple[int, dict[str, Any]]:
        """Stripe's idempotency: the same key on the same path answers the first answer again, making nothing."""
        if not request.idempotency_key:
            return make(request)
        key = (request.path, request.idempotency_key)
        with self._idempotency_lock:  # as Stripe: a second request with the key waits for the first one's answer
            kept = self._idempotent.get(key)
            if kept is None:
                kept = self._idempotent[key] = make(request)
        return kept[0], copy.deepcopy(kept[1])

    def _create_customer(self, request: Request) -> tuple[int, dict[str, Any]]:
        from tests.support import stripe_data

        def one(name: str) -> str | None:
            return (request.query.get(name) or [None])[0]

        metadata = _nested(request.query, "metadata")
        customer = stripe_data.customer(one("email") or "", metadata=metadata)
        customer.update(id=self._new_id("cus"), name=one("name"), created=int(time.time()))
        self.put(customer)
        return 200, customer

    def _create_checkout_session(self, request: Request) -> tuple[int, dict[str, Any]]:
        """A subscription-mode session: its line item (price, quantity, adjustable bounds) is kept for the page."""

        def one(name: str) -> str | None:
            return (request.query.get(name) or [None])[0]

        price_id, customer_id = one("line_items[0][price]"), one("customer")
        with self._lock:
            price = copy.deepcopy(self._objects.get(price_id or ""))
            customer_known = customer_id in self._objects
        if price is None or price.get("object") != "price":
            return self._missing(request, "price", price_id or "", expected=True)
        if not customer_known:
            return self._missing(request, "customer", customer_id or "", expected=True)
        if one("mode") != "subscription" or not one("success_url") or not one("cancel_url"):
            return 400, _invalid("mode=subscription, success_url and cancel_url are required.")
        quantity = int(one("line_items[0][quantity]") or 1)
        adjustable = one("line_items[0][adjustable_quantity][enabled]") == "true"
        minimum = int(one("line_items[0][adjustable_quantity][minimum]") or 0) if adjustable else quantity
        maximum = int(one("line_items[0][adjustable_quantity][maximum]") or 99) if adjustable else quantity
        session_id = self._new_id("cs_test")
        now = int(time.time())
        session = {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": price["unit_amount"] * quantity,
            "amount_total": price["unit_amount"] * quantity,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": one("cancel_url"),
            "client_reference_id": one("client_reference_id"),
            "consent": None,
            "created": now,
            "currency": price.get("currency", "usd"),
            "customer": customer_id,
            "customer_creation": None,
            "customer_details": None,
            "customer_email": None,
            "expires_at": now + 86_400,
            "invoice": None,
            "livemode": False,
            "locale": None,
            "metadata": _nested(request.query, "metadata"),
            "mode": "subscription",
            "payment_intent": None,
            "payment_link": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "setup_intent": None,
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "success_url": (one("success_url") or "").replace("{CHECKOUT_SESSION_ID}", session_id),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": f"{self.url}/checkout/{session_id}",
        }
        line_item = {
            "id": self._new_id("li"),
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": price["unit_amount"] * quantity,
            "amount_tax": 0,
            "amount_total": price["unit_amount"] * quantity,
            "currency": price.get("currency", "usd"),
            "description": price.get("nickname") or "Seats",
            "price": price,
            "quantity": quantity,
            "adjustable_quantity": {"enabled": adjustable, "minimum": minimum, "maximum": maximum},
        }
        with self._lock:
            self._objects[session_id] = copy.deepcopy(session)
            self._line_items[session_id] = [line_item]
        return 200, session

    def _checkout_session(self, request: Request, session_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            session = copy.deepcopy(self._objects.get(session_id))
            items = copy.deepcopy(self._line_items.get(session_id, []))
        if session is None or session.get("object") != "checkout.session":
            return self._missing(request, "checkout.session", session_id, expected=True)
        if any(value.startswith("line_items") for value in request.query.get("expand[]", [])):
            session["line_items"] = {
                "object": "list",
                "data": items,
                "has_more": False,
                "url": f"/v1/checkout/sessions/{session_id}/line_items",
            }
        return 200, session

    def _create_portal_session(self, request: Request) -> tuple[int, dict[str, Any]]:
        customer_id = (request.query.get("customer") or [None])[0]
        with self._lock:
            known = customer_id in self._objects
        if not known:
            return self._missing(request, "customer", customer_id or "", expected=True)
        portal_id = self._new_id("bps")
        portal = {
            "id": portal_id,
            "object": "billing_portal.session",
            "configuration": "bpc_stub",
            "created": int(time.time()),
            "customer": customer_id,
            "flow": None,
            "livemode": False,
            "locale": None,
            "on_behalf_of": None,
            "return_url": (request.query.get("return_url") or [None])[0],
            "url": f"{self.url}/portal/{portal_id}",
        }
        self.put(portal)
        return 200, portal

    def _page(self, method: str, path: str, form: dict[str, list[str]]) -> tuple[int, str, str]:
        """The browser pages of Checkout and the Billing Portal: (status, Location or "", HTML)."""
        parts = [p for p in path.split("/") if p]
        if len(parts) != 2:
            return 404, "", "<p>No such page.</p>"
        kind, object_id = parts
        with self._lock:
            obj = copy.deepcopy(self._objects.get(object_id))
        if kind == "checkout" and obj is not None and obj.get("object") == "checkout.session":
            return self._checkout_page(method, obj, form)
        if kind == "portal" and obj is not None and obj.get("object") == "billing_portal.session":
            return self._portal_page(method, obj, form)
        return 404, "", "<p>No such session.</p>"

    def _checkout_page(self, method: str, session: dict[str, Any], form: dict[str, list[str]]) -> tuple[int, str, str]:
        with self._lock:
            item = copy.deepcopy(self._line_items[session["id"]][0])
        bounds = item["adjustable_quantity"]
        if session["status"] == "complete":
            return 303, session["success_url"], ""
        error = ""
        if method == "POST":
            try:
                quantity = int((form.get("quantity") or [""])[0])
            except ValueError:
                quantity = -1
            if bounds["minimum"] <= quantity <= bounds["maximum"]:
                self._pay(session, item, quantity)
                return 303, session["success_url"], ""
            error = f"<p id='error'>Choose {bounds['minimum']} to {bounds['maximum']}.</p>"
        html = (
            f"<!doctype html><title>Checkout (Stripe stub)</title><h1>Pay {escape(item['description'])}</h1>{error}"
            f"<form method='post' id='checkout-form'><label for='quantity'>Quantity</label>"
            f"<input type='number' id='quantity' name='quantity' value='{item['quantity']}' "
            f"min='{bounds['minimum']}' max='{bounds['maximum']}'>"
            f"<button type='submit' id='pay'>Pay</button></form>"
            f"<p><a id='cancel' href='{escape(session['cancel_url'])}'>Back</a></p>"
        )
        return (400 if error else 200), "", html

    def _pay(self, session: dict[str, Any], item: dict[str, Any], quantity: int) -> None:
        """The card was charged: an active subscription of the price and quantity, the session complete."""
        from tests.support import stripe_data

        now = int(time.time())
        with self._lock:
            customer = copy.deepcopy(self._objects[session["customer"]])
        subscription = stripe_data.subscription(customer, [(item["price"], quantity)], status="active", created=now)
        subscription["id"] = self._new_id("sub")
        for sub_item in subscription["items"]["data"]:
            sub_item["subscription"] = subscription["id"]
        subscription["items"]["url"] = f"/v1/subscription_items?subscription={subscription['id']}"
        subscription["metadata"] = dict(session.get("metadata") or {})
        session.update(status="complete", payment_status="paid", subscription=subscription["id"])
        with self._lock:
            self._line_items[session["id"]][0]["quantity"] = quantity
        self.put(subscription, session)
        self._send(stripe_data.event("customer.subscription.created", subscription, created=now))
        self._send(stripe_data.event("checkout.session.completed", session, created=now))

    def _portal_page(self, method: str, portal: dict[str, Any], form: dict[str, list[str]]) -> tuple[int, str, str]:
        from tests.support import stripe_data

        current = [s for s in self.subscriptions_of(portal["customer"]) if s["status"] != "canceled"]
        if not current:
            page = "<!doctype html><title>Billing portal (Stripe stub)</title><p id='none'>No subscription.</p>"
            return 200, "", page
        subscription = current[0]
        quantity = subscription["items"]["data"][0].get("quantity")
        error = ""
        if method == "POST":
            try:
                wanted = int((form.get("quantity") or [""])[0])
            except ValueError:
                wanted = 0
            if wanted >= 1:
                changed = stripe_data.with_quantities(subscription, wanted)
                self.put(changed)
                self._send(stripe_data.event("customer.subscription.updated", changed, created=int(time.time())))
                return 303, portal["return_url"], ""
            error = "<p id='error'>Choose at least 1.</p>"
        html = (
            f"<!doctype html><title>Billing portal (Stripe stub)</title><h1>Your subscription</h1>{error}"
            f"<p id='quantity-now'>Quantity: {quantity}</p>"
            f"<form method='post' id='portal-form'><label for='quantity'>Quantity</label>"
            f"<input type='number' id='quantity' name='quantity' value='{quantity}' min='1'>"
            f"<button type='submit' id='update'>Update</button></form>"
            f"<p><a id='return' href='{escape(portal['return_url'] or '')}'>Return</a></p>"
        )
        return (400 if error else 200), "", html

    def _send(self, event: dict[str, Any]) -> None:
        """Keep the event; POST it, signed, to the webhook target when there is one."""
        from tests.support import stripe_data

        self.events.append(copy.deepcopy(event))
        target = self._webhook_target
        if target is None:
            return
        url, secret = target
        payload = stripe_data.dumps(event)
        split = urlsplit(url)
        headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_data.signature(payload, secret)}
        connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port or 80, timeout=30)
        try:
            connection.request(
                "POST",
                split.path or "/",
                body=payload.encode(),
                headers=headers,
            )
            answer = connection.getresponse()
            answer.read()
            self.delivered.append(answer.status)
        finally:
            connection.close()

    def _missing(
        self, request: Request, what: str, object_id: str = "", *, expected: bool = False
    ) -> tuple[int, dict[str, Any]]:
        if not expected and what == "route":
            self.unexpected.append(request)
        message = f"No such {what}: '{object_id}'" if object_id else f"Unrecognized request URL ({request.path})."
        return 404, {
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "id" if object_id else None,
                "message": message,
            }
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY on each connection: the headers and the body go out in two writes, and with Nagle's
            # algorithm the body waited for the client's delayed ACK (~40 ms an answer on a kept-alive connection).
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                query = parse_qs(split.query)
                for key, values in parse_qs(body).items():
                    query.setdefault(key, []).extend(values)
                request = Request(
                    self.command,
                    split.path,
                    query,
                    self.headers.get("Authorization", ""),
                    self.headers.get("Idempotency-Key", ""),
                )
                stub.requests.append(request)
                if split.path.startswith(("/checkout/", "/portal/")):
                    self._send_page(*stub._page(self.command, split.path, query))
                    return
                status, payload = stub._answer(request)  # Stripe's state as the request arrives
                hold = stub._holds.pop(split.path, None)  # one request per hold
                if hold is not None:
                    hold.arrived.set()
                    hold.released.wait(timeout=30)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Request-Id", f"req_stub{int(time.time() * 1000)}")
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a test of Stripe's timeout): as Stripe, answer nobody

            def _send_page(self, status: int, location: str, html: str) -> None:
                data = html.encode()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve
            do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `stub.requests`
                pass

        return Handler


def _nested(query: dict[str, list[str]], name: str) -> dict[str, str]:
    """`name[key]=value` form fields as a dict (Stripe's encoding of a hash such as metadata)."""
    prefix = f"{name}["
    return {
        key[len(prefix) : -1]: values[0]
        for key, values in query.items()
        if key.startswith(prefix) and key.endswith("]") and "][" not in key
    }


def _invalid(message: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "message": message}}


def _error(status: int) -> dict[str, Any]:
    if status == 429:
        return {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests."}}
    return {"error": {"type": "api_error", "message": f"The stub answered {status} as asked."}}
