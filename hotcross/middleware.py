"""A database that does not answer is a 503 with `Retry-After`, never a 500, on every Django page and endpoint.

`DatabaseUnavailableMiddleware.process_exception` answers a view (or its template, rendered later) that failed because
the database could not be reached: a query its bound cut (`infra.db.bound_queries`), a connection that broke or
could not be made, a pool that had no connection to give within `DATABASE_POOL_TIMEOUT` (psycopg_pool's
`PoolTimeout`, which Django raises as `OperationalError`), `infra.db.DatabaseUnavailable`. What fails in another
middleware (a session saved after the view) reaches Django's 500 handler instead: `hotcross.views.server_error` gives
the same answer there. The answer is JSON (`{"error": {"code": "service_unavailable", "message": …}}`, as the key-check
API and the MCP bridge say it) unless the client asked for HTML (a browser: the admin, the sign-in pages).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from infra.db import DatabaseUnavailable, is_database_outage

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 with `Retry-After`: JSON, or a short page for a client that asked for HTML."""
    message = DatabaseUnavailable.message
    if _wants_html(request):
        response = HttpResponse(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>Service unavailable</title></head>"
            f"<body><h1>Service unavailable</h1><p>{message}</p></body></html>",
            status=503,
            content_type="text/html; charset=utf-8",
        )
    else:
        response = JsonResponse({"error": {"code": "service_unavailable", "message": message}}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def _wants_html(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept


class DatabaseUnavailableMiddleware:
    """Views whose database did not answer: 503 + Retry-After (see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_outage(exception):
            return None
        logger.warning(
            "database unavailable: %s %s answered 503 (%s)", request.method, request.path, type(exception).__name__
        )
        return unavailable_response(request)


class RejectNulMiddleware:
    """A NUL character in a query parameter or a form field (names included) is a 400 before any view runs: no
    legitimate client sends one, and PostgreSQL refuses it in text (a `DataError`, a 500, wherever a view queries with
    it: OAuth's client lookups, the sign-in). OAuth endpoints answer in OAuth's error format."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(_OWN_CHECKS) and _has_nul(request):
            return _nul_response(request)
        return self.get_response(request)


# Pages that check their fields themselves and say what is wrong on the page (the developers' sign-in, /account/).
_OWN_CHECKS = ("/account/",)


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.META.get("QUERY_STRING", "") or "%00" in request.META.get("QUERY_STRING", ""):
        return True
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        return any("\x00" in name or any("\x00" in v for v in values) for name, values in request.POST.lists())
    return False


def _nul_response(request: HttpRequest) -> HttpResponse:
    message = "The request holds a NUL character, which no parameter may contain."
    if request.path.startswith("/oauth/"):
        response = JsonResponse({"error": "invalid_request", "error_description": message}, status=400)
    elif _wants_html(request):
        response = HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    else:
        response = JsonResponse({"error": {"code": "invalid_request", "message": message}}, status=400)
    response["Cache-Control"] = "no-store"
    return response
