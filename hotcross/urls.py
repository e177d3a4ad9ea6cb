from django.contrib import admin
from django.urls import include, path

from accounts.billing import webhooks
from hotcross.views import djstripe_admin_action, healthz, landing
from infra.metrics import metrics_view
from mcp_bridge.gateway.keys import jwks

# A database that did not answer is a 503 even when a middleware met it (hotcross.middleware); else Django's 500.
handler500 = "hotcross.views.server_error"

urlpatterns = [
    path("", landing, name="landing"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    # The key that signs the gateway's caller assertions to HTTP upstreams (upstream.assertion).
    path(".well-known/jwks.json", jwks, name="jwks"),
    # Before the admin's own URLs, so this guarded view answers dj-stripe's action URLs (see its docstring).
    path(
        "admin/djstripe/<str:model>/action/<str:action_name>/<str:model_name>/",
        admin.site.admin_view(djstripe_admin_action),
    ),
    path("admin/", admin.site.urls),
    # Stripe webhooks: /stripe/webhook/<uuid>/ (see `manage.py stripe_webhook_endpoint`), checked before dj-stripe's
    # own view sees them (accounts.billing.webhooks); dj-stripe's URL names still build the paths.
    path("stripe/webhook/<uuid:uuid>/", webhooks.receive, name="stripe_webhook"),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    # The key-check API for servers that run elsewhere (api/): POST /api/v1/keys/verify, POST /api/v1/usage.
    path("api/v1/", include("api.urls")),
    # OAuth for MCP clients (issue 13): discovery, the authorization server, developers' sign-in and /account/.
    path("", include("oauth.urls")),
    # Customers' own pages (portal/): /signup/, /invitations/<token>/, /org/ for owners and admins (issue 30).
    path("", include("portal.urls")),
]
