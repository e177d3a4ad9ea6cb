"""A small local stand-in for the Stripe API: the endpoints dj-stripe 2.11 calls while it syncs a subscription.

It holds current-API-shaped objects (account, customers, subscriptions with their items, products, prices) and
serves them as Stripe does: `GET /v1/<collection>/<id>`, the subscription list of a customer (with Stripe's `status`
filter: canceled ones only when asked for), a product's features.
Tests change what it holds to say "this is Stripe's state now", then deliver (possibly stale) webhook events.

Every request is recorded. A request for anything else is answered 404 and kept in `unexpected`, so a test can
assert dj-stripe asked for nothing we did not foresee.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


@dataclass
class Hold:
    """Keeps the next answer for one path waiting: `arrived` is set once Stripe's state has been read for it,
    `release()` sends it."""

    path: str
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class StripeStub:
    def __init__(self) -> None:
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._holds: dict[str, Hold] = {}
        self.requests: list[Request] = []
        self.unexpected: list[Request] = []
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
        self._thread = threading.Thread(target=self._server.serve_forever, name="stripe-stub", daemon=True)

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

    def requested(self, path_prefix: str = "/v1/") -> list[str]:
        return [r.path for r in self.requests if r.path.startswith(path_prefix)]

    def forget_requests(self) -> None:
        self.requests.clear()
        self.unexpected.clear()

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
        parts = [p for p in request.path.split("/") if p]
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

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                query = parse_qs(split.query)
                for key, values in parse_qs(body).items():
                    query.setdefault(key, []).extend(values)
                request = Request(self.command, split.path, query, self.headers.get("Authorization", ""))
                stub.requests.append(request)
                status, payload = stub._answer(request)  # Stripe's state as the request arrives
                hold = stub._holds.pop(split.path, None)  # one request per hold
                if hold is not None:
                    hold.arrived.set()
                    hold.released.wait(timeout=30)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_stub{int(time.time() * 1000)}")
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve
            do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `stub.requests`
                pass

        return Handler
