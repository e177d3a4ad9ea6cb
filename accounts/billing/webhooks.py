"""The door in front of dj-stripe's webhook view: what is not a genuine, well-formed Stripe event never reaches it.

dj-stripe stores every delivery before checking it, and some malformed ones (a non-ASCII signature, a signed body
whose fields do not fit its columns) make it fail with HTTP 500. Here, in order, each answered at once with a clear
status and one log line (never the body, the signature or a secret), nothing stored:

1. no `Stripe-Signature`, or one that is not Stripe's ASCII `t=…,v1=…` form → 400;
2. a timestamp outside the endpoint's tolerance, in the past *or the future*, or a signature that does not match the
   endpoint's stored secret → 400 (`X-Djstripe-Webhook-Secret`, which dj-stripe honours in debug mode, is ignored:
   the stored secret is the only one);
3. a signed body that is not an event Stripe could have sent (not a JSON object, fields of the wrong type or too long
   for dj-stripe's columns, NUL characters, nesting deeper than Stripe's objects go) → 400;
4. no usable Stripe API key for the endpoint's mode → 503 (Stripe retries; the reason names the setting);
then dj-stripe processes the event; if Stripe's API cannot be reached meanwhile → 503, so Stripe delivers it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from typing import Any

import stripe
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotFound
from django.utils.log import log_response
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from djstripe.models import WebhookEndpoint
from djstripe.views import ProcessWebhookView

from accounts.billing.config import describe_error, key_problem
from infra import metrics

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 60
MAX_DEPTH = 32  # Stripe's objects nest a handful of levels; far deeper is not an event
MAX_SIGNATURE_HEADER = 2048
# Longest values dj-stripe stores for an event (its columns), and for the ids it looks objects up by.
_MAX_LENGTHS = {"id": 255, "type": 250, "api_version": 64}
_SIGNATURE = re.compile(r"(?:[a-z0-9]+=[A-Za-z0-9]+)(?:,[a-z0-9]+=[A-Za-z0-9]+)*")


class Refused(Exception):
    """Why a delivery is refused (said in one log line and the response)."""


@csrf_exempt
@require_POST
def receive(request: HttpRequest, uuid: uuid.UUID) -> HttpResponse:
    """`/stripe/webhook/<uuid>/`: checks, then dj-stripe's own view; counted in `/metrics` by type and outcome."""
    response = _receive(request, uuid)
    outcome = "processed" if response.status_code < 300 else "refused" if response.status_code < 500 else "unavailable"
    event_type = "unknown"
    if outcome == "processed":  # a verified body: its type is Stripe's
        with contextlib.suppress(ValueError, RecursionError, AttributeError):
            event_type = str(json.loads(request.body).get("type", "unknown"))[:100]
    metrics.WEBHOOK_EVENTS.labels(event_type, outcome).inc()
    return response


def _receive(request: HttpRequest, uuid: uuid.UUID) -> HttpResponse:
    header = request.headers.get("Stripe-Signature")
    if header is None:
        return _refused(request, None, "no Stripe-Signature header")
    endpoint = WebhookEndpoint.objects.filter(djstripe_uuid=uuid).first()
    if endpoint is None:
        return HttpResponseNotFound("No webhook endpoint has this address.")
    try:
        payload = _verified_payload(_body(request), header, endpoint)
        _check_event(payload)
    except Refused as refusal:
        return _refused(request, endpoint, str(refusal))
    problem = key_problem(live=bool(endpoint.livemode))
    if problem:
        return _unavailable(request, endpoint, problem)
    # The stored secret decided above; dj-stripe must not take another one from the request in debug mode.
    request.META.pop("HTTP_X_DJSTRIPE_WEBHOOK_SECRET", None)
    request.__dict__.pop("headers", None)
    try:
        return ProcessWebhookView.as_view()(request, uuid=uuid)
    except stripe.StripeError as exc:
        reason = f"Stripe's API did not answer ({describe_error(exc)}); Stripe will deliver it again."
        return _unavailable(request, endpoint, reason)


def _body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise Refused(f"a body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes") from None


def _verified_payload(body: bytes, header: str, endpoint: WebhookEndpoint) -> str:
    if len(header) > MAX_SIGNATURE_HEADER or not _SIGNATURE.fullmatch(header.strip()):
        raise Refused("a Stripe-Signature header that is not Stripe's t=...,v1=... form")
    parts = dict(part.split("=", 1) for part in header.strip().split(","))
    if not (parts.get("t", "").isdigit() and len(parts["t"]) <= 12) or "v1" not in parts:
        raise Refused("a Stripe-Signature header without a timestamp and a v1 signature")
    tolerance = int(endpoint.djstripe_tolerance or 300)
    if abs(time.time() - int(parts["t"])) > tolerance:
        raise Refused(f"a signature timestamped more than {tolerance} s from now")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("a body that is not UTF-8") from None
    try:
        stripe.WebhookSignature.verify_header(payload, header, endpoint.secret, tolerance)
    except stripe.SignatureVerificationError:
        raise Refused("a signature that does not match the endpoint's secret") from None
    return payload


def _check_event(payload: str) -> None:
    """A signed body is still only as good as its sender's code: it must be an event dj-stripe can store."""
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):
        raise Refused("a signed body that is not JSON (or is nested too deeply)") from None
    if not isinstance(event, dict):
        raise Refused("a signed body that is not a JSON object")
    if event.get("object") != "event":
        raise Refused('a signed object that is not an event ("object": "event")')
    for name, limit in _MAX_LENGTHS.items():
        value = event.get(name)
        if name == "api_version" and value is None:
            continue
        if not isinstance(value, str) or not 0 < len(value) <= limit:
            raise Refused(f"an event whose {name} is not a string of 1 to {limit} characters")
    if not isinstance(event.get("created"), int) or isinstance(event.get("created"), bool):
        raise Refused("an event whose created is not a whole number")
    if not isinstance(event.get("livemode"), bool):
        raise Refused("an event whose livemode is not true or false")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise Refused("an event whose data.object is not an object")
    obj = data["object"]
    for name in ("id", "customer"):
        value = obj.get(name)
        if value is not None and not isinstance(value, dict) and not (isinstance(value, str) and len(value) <= 255):
            raise Refused(f"an event whose data.object.{name} is not an id")
    request_info = event.get("request")
    if isinstance(request_info, dict) and request_info.get("id") is not None:
        if not isinstance(request_info["id"], str) or len(request_info["id"]) > 50:
            raise Refused("an event whose request.id is not an id")
    _check_values(event)


def _check_values(event: Any) -> None:
    """No NUL character in any string (PostgreSQL's JSON and text cannot hold one) and no nesting past `MAX_DEPTH`."""
    stack = [(event, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Refused(f"an event nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise Refused("an event with a NUL character")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and "\x00" in value:
            raise Refused("an event with a NUL character")


def _refused(request: HttpRequest, endpoint: WebhookEndpoint | None, reason: str) -> HttpResponse:
    response = HttpResponseBadRequest(f"Refused: {reason}.", content_type="text/plain")
    # One line per refusal: log_response marks the response logged, so django.request does not add its own.
    log_response(
        "stripe webhook refused (400) for %s: %s; from %s",
        endpoint.id if endpoint is not None else "an unchecked endpoint",
        reason,
        request.META.get("REMOTE_ADDR", "?"),
        response=response,
        request=request,
        logger=logger,
    )
    return response


def _unavailable(request: HttpRequest, endpoint: WebhookEndpoint, reason: str) -> HttpResponse:
    response = HttpResponse(reason, status=503, content_type="text/plain")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    log_response(
        "stripe webhook %s not processed (503): %s",
        endpoint.id,
        reason,
        response=response,
        request=request,
        logger=logger,
    )
    return response
