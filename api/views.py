"""`POST /api/v1/keys/verify` and `POST /api/v1/usage`: what a server running elsewhere needs, with only a developer's
key (`Authorization: Bearer hc_live_…` or `X-API-Key: hc_live_…`) and this site's URL.

Answers are JSON. A refused key: 401 (no key, unknown key) or 403 (a known key that is refused) with the key check's
stable `code` and `message`, the same as the MCP bridge says. Client mistakes (bad JSON, a body too large, wrong
types, a time that does not exist) are 400 with a clear `error`; a usage report the plan does not allow is 403
(`tool_not_in_plan`, `monthly_cap_reached`) or 429 with `Retry-After` (`rate_limited`): see
`api.reported_usage`. Nothing is written for a refused request. No answer ever contains the key.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts import credentials
from accounts.credentials import Principal
from accounts.exceptions import AccountsError, KeyRefused
from accounts.plans import terms_for
from accounts.selectors import seats_in_use
from api.reported_usage import MAX_EVENTS, UsageReportRefused, record_reported_usage
from infra import request_log
from infra.db import DatabaseUnavailable

logger = logging.getLogger(__name__)

MAX_VERIFY_BODY = 16 * 1024
MAX_USAGE_BODY = 512 * 1024  # 1 000 events of a few hundred bytes each
MAX_CACHE_SECONDS = 60
NO_KEY = (
    "No API key. Send your Hotcross key in 'Authorization: Bearer hc_live_…' or 'X-API-Key: hc_live_…'; "
    "ask an administrator of your organization if you have none."
)


# A refused usage report: 403 when the key's developer or plan may not report it, 429 when over the plan's rate
# limit; every other refusal (a malformed or out-of-window event, too many events) is a 400.
_REFUSAL_STATUS = {"other_developer": 403, "tool_not_in_plan": 403, "monthly_cap_reached": 403, "rate_limited": 429}


class _BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message, **extra}}, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _max_age() -> int:
    return max(0, min(int(settings.HOTCROSS_API_VERIFY_MAX_AGE), MAX_CACHE_SECONDS))


def _key(request: HttpRequest) -> str | None:
    header = request.headers.get("X-API-Key", "").strip()
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else ""
    if header and bearer and header != bearer:
        raise _BadRequest("invalid_request", "Two different keys were sent (Authorization and X-API-Key): send one.")
    return header or bearer or None


def _body(request: HttpRequest, limit: int) -> Any:
    """The request's JSON body (None when empty). Refuses a body over `limit` bytes before reading it all."""
    declared = str(request.META.get("CONTENT_LENGTH") or "0").strip()
    if not (declared.isascii() and declared.isdigit()):  # int() would take "-1", " 1_0" and other scripts' digits
        raise _BadRequest("invalid_request", "The Content-Length header is not a number of bytes.")
    if int(declared) > limit:
        raise _BadRequest("body_too_large", f"The request body is larger than {limit // 1024} KiB.")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise _BadRequest("body_too_large", f"The request body is larger than {limit // 1024} KiB.")
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise _BadRequest("invalid_json", "The request body is not valid JSON (UTF-8).") from None


def _authenticated(request: HttpRequest) -> Principal | JsonResponse:
    try:
        key = _key(request)
    except _BadRequest as exc:
        return _error(400, exc.code, exc.message)
    if key is None:
        response = _error(401, KeyRefused.INVALID_KEY, NO_KEY)
        response["WWW-Authenticate"] = 'Bearer realm="hotcross"'
        return response
    try:
        principal = credentials.authenticate(key, kinds=credentials.KEYS_ONLY).principal
    except KeyRefused as refusal:
        logger.info("api request refused code=%s", refusal.code)
        unknown = refusal.code == KeyRefused.INVALID_KEY
        response = _error(401 if unknown else 403, refusal.code, refusal.message)
        response["Cache-Control"] = f"private, max-age={_max_age()}"
        if unknown:
            response["WWW-Authenticate"] = 'Bearer realm="hotcross", error="invalid_token"'
        return response
    except DatabaseUnavailable as exc:
        response = _error(503, "service_unavailable", exc.message)
        response["Retry-After"] = "5"
        return response
    request_log.note_developer(principal.developer_id)  # the request log's developer id
    return principal


@csrf_exempt
@require_POST
def verify_key(request: HttpRequest) -> HttpResponse:
    """Who a key belongs to, or why it is refused. Cacheable for `HOTCROSS_API_VERIFY_MAX_AGE` (≤ 60) seconds."""
    try:
        _body(request, MAX_VERIFY_BODY)  # nothing is needed from it, but a client mistake is still said
    except _BadRequest as exc:
        return _error(400, exc.code, exc.message)
    principal = _authenticated(request)
    if isinstance(principal, HttpResponse):
        return principal
    try:
        seats_used = seats_in_use(principal.organization_id)
        plan = terms_for(principal.plan_id)
    except DatabaseUnavailable as exc:
        return _error(503, "service_unavailable", exc.message)
    response = JsonResponse(
        {
            "developer": {
                "id": str(principal.developer_id),
                "email": principal.email,
                "name": f"{principal.first_name} {principal.last_name}".strip(),
            },
            "organization": {
                "id": str(principal.organization_id),
                "name": principal.organization_name,
                "subscription_status": principal.subscription_status,
                "seats_used": seats_used,
                "max_seats": principal.max_seats,
            },
            "entitlements": plan.describe(principal.max_seats),  # the plan in effect and its limits (issue 16)
            "cache_seconds": _max_age(),
        }
    )
    response["Cache-Control"] = f"private, max-age={_max_age()}"
    return response


@csrf_exempt
@require_POST
def report_usage(request: HttpRequest) -> HttpResponse:
    """Record a batch of the key's developer's tool calls: `{"events": [{id, tool, at, ok, duration_ms}, …]}`."""
    try:
        body = _body(request, MAX_USAGE_BODY)
    except _BadRequest as exc:
        return _error(400, exc.code, exc.message)
    principal = _authenticated(request)
    if isinstance(principal, HttpResponse):
        return principal
    if not isinstance(body, dict) or "events" not in body:
        return _error(400, "invalid_request", f'The body must be {{"events": [...]}} with at most {MAX_EVENTS} events.')
    try:
        report = record_reported_usage(principal=principal, events=body["events"])
    except UsageReportRefused as exc:
        response = _error(_REFUSAL_STATUS.get(exc.code, 400), exc.code, exc.message, events=exc.errors, **exc.details)
        if exc.code == "rate_limited":
            response["Retry-After"] = str(exc.details.get("retry_after", 1))
        return response
    except DatabaseUnavailable as exc:
        return _error(503, "service_unavailable", exc.message)
    except AccountsError as exc:
        return _error(400, exc.code, exc.message)
    response = JsonResponse({"recorded": report.recorded, "duplicates": report.duplicates})
    response["Cache-Control"] = "no-store"
    return response
