from django.contrib import admin
from django.urls import include, path

from hotcross.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Stripe webhooks: /stripe/webhook/<uuid>/ (see `manage.py stripe_webhook_endpoint`).
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
]
