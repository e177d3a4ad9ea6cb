"""ASGI entry point: `uvicorn hotcross.asgi:application` serves the admin, webhooks and /healthz."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotcross.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402  (after setup)

if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(django_application)
else:
    application = django_application
