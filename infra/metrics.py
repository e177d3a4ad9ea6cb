"""Prometheus metrics (prometheus-client) and the `/metrics` view that exposes them.

One process: the default registry. Several workers (`uvicorn --workers N`): set `PROMETHEUS_MULTIPROC_DIR` to an
empty folder writable by the server, the same for every worker and emptied before each start; each worker then writes
its figures to files there and `/metrics`, whichever worker answers, sums them (prometheus-client's multiprocess mode).

Access: `Authorization: Bearer <HOTCROSS_METRICS_TOKEN>` (for a Prometheus scraper), or a signed-in staff user. Anyone
else gets 401 (no or a wrong token) or 403 (signed in, not staff); with no token set only staff can read it.

Labels stay few: outcomes are the key check's refusal codes, tools are the server's tool names (the bridge meters only
its own tools), webhook types are Stripe's event types.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

KEY_CHECKS = Counter("hotcross_key_checks", "API key checks by outcome (ok, or the refusal code)", ["outcome"])
TOKEN_CHECKS = Counter("hotcross_token_checks", "OAuth access token checks by outcome", ["outcome"])
KEY_CHECK_SECONDS = Histogram(
    "hotcross_key_check_seconds", "Time of a key check that asked the database (cold)", buckets=_FAST
)
TOOL_CALLS = Counter(
    "hotcross_tool_calls", "MCP tool calls served, by tool and outcome (ok, error)", ["tool", "outcome"]
)
# Issue 16: tools/call refused by the plan (tool_not_in_plan, rate_limited, monthly_cap_reached); never metered.
TOOL_CALLS_REFUSED = Counter("hotcross_tool_calls_refused", "MCP tool calls refused by the plan, by reason", ["reason"])
# Issue 14: forwarded tools/call by the path that served it: direct (mcp_bridge.gateway.direct) or sdk (the server).
GATEWAY_FORWARDED = Counter(
    "hotcross_gateway_forwarded_calls", "Forwarded tools/call by path (direct: without the SDK's server; sdk)", ["path"]
)
RATE_LIMIT_CHECKS = Counter(
    "hotcross_rate_limit_checks", "Plan rate-limit checks by outcome (ok, refused, redis_unavailable)", ["outcome"]
)
TOOL_CALL_SECONDS = Histogram("hotcross_tool_call_seconds", "Time to serve an MCP tool call", ["tool"], buckets=_SLOW)
METERING_BUFFERED = Gauge(
    "hotcross_metering_buffered_events",
    "Usage events waiting in the metering buffer",
    multiprocess_mode="livesum",
)
METERING_FLUSH_SECONDS = Histogram(
    "hotcross_metering_flush_seconds", "Time to write one batch of usage events (and their rollups)", buckets=_FAST
)
WEBHOOK_EVENTS = Counter(
    "hotcross_webhook_events", "Stripe webhook deliveries by event type and outcome", ["type", "outcome"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "hotcross_http_request_seconds",
    "Time to answer an HTTP request, by area (mcp, admin, stripe, metrics, other) and status class",
    ["area", "status"],
    buckets=_SLOW,
)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """`/metrics` in Prometheus' text format, for the token's bearer or staff."""
    token = settings.HOTCROSS_METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if given.startswith("Bearer "):
        if not token or not hmac.compare_digest(given[len("Bearer ") :].strip().encode(), token.encode()):
            return _refused(401, "The metrics token is not valid.")
    elif not (request.user.is_authenticated and request.user.is_staff):
        if request.user.is_authenticated:
            return _refused(403, "Only staff can read the metrics.")
        return _refused(401, "Send Authorization: Bearer <HOTCROSS_METRICS_TOKEN>, or sign in as staff.")
    registry = REGISTRY
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _refused(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def worker_stopped() -> None:
    """A stopping worker's live gauges leave the sums (multiprocess mode)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())
