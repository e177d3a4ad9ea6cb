"""Project-level views that belong to no app."""

import logging
import sys

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views import defaults
from django.views.decorators.http import require_safe
from djstripe.admin.views import ConfirmCustomAction

from accounts.admin.registry import registered_admin
from hotcross.middleware import unavailable_response
from infra import health
from infra.db import is_database_outage

logger = logging.getLogger(__name__)


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """`/`: what this server is and where its doors are (the admin's "View site" leads here)."""
    base = settings.HOTCROSS_PUBLIC_URL
    return render(
        request,
        "landing.html",
        {
            "mcp_url": f"{base}/mcp",
            "mcp_key_url": f"{base}/mcp/key",
            "account_url": reverse("account"),
            "signup_url": reverse("signup"),
            "org_url": reverse("org_home"),
            "admin_url": reverse("admin:index"),
            "healthz_url": reverse("healthz"),
        },
    )


def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers a query, 503 otherwise (for load balancers and uptime checks).

    The body also holds what the apps' health checks say (`infra.health`; in gateway mode `upstream`: the upstream
    MCP server's state, restarts, last error), without changing the status: the site and the built-in tools work
    without it.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("healthz: database unavailable: %s", exc.__class__.__name__)
        response = JsonResponse({"status": "unavailable", "database": "down", **health.statuses()}, status=503)
        response["Retry-After"] = "5"
        return response
    return JsonResponse({"status": "ok", "database": "up", **health.statuses()})


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 handler (`handler500`): a database that did not answer is a 503 with Retry-After here too (an
    error in a middleware, which `hotcross.middleware` does not see); anything else is Django's 500 page."""
    if is_database_outage(sys.exc_info()[1]):
        return unavailable_response(request)
    return defaults.server_error(request)


# The actions dj-stripe's admin offers through its own URL (`djstripe.admin.actions.CustomActionMixin`).
DJSTRIPE_ADMIN_ACTIONS = frozenset(
    {
        "_resync_instances",
        "_sync_all_instances",
        "_cancel",
        "_release_subscription_schedule",
        "_cancel_subscription_schedule",
    }
)


def djstripe_admin_action(request: HttpRequest, model: str, action_name: str, model_name: str) -> HttpResponse:
    """dj-stripe's admin action view, behind a permission check it lacks.

    dj-stripe only asks for a staff login before syncing from Stripe or cancelling a subscription *in Stripe*; here
    the model's registered admin must allow the user to change it (only superusers, see `hotcross.admin_site`).
    """
    if request.method != "POST":
        # dj-stripe's view answers a GET with a server error: its confirmation page comes from the changelist action.
        return HttpResponseNotAllowed(["POST"])
    if action_name not in DJSTRIPE_ADMIN_ACTIONS:
        raise Http404("No such action.")
    try:
        target = apps.get_model("djstripe", model_name)
    except LookupError:
        raise Http404("No such model.") from None
    # The registered admin decides (dj-stripe's admin is superuser-only, whatever permissions a staff user holds).
    model_admin = registered_admin(admin.site, target)
    if model_admin is None or not model_admin.has_change_permission(request):
        raise PermissionDenied
    return ConfirmCustomAction.as_view()(request, action_name=action_name, model_name=model_name)
