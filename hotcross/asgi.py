"""ASGI entry point: `uvicorn hotcross.asgi:application` serves the admin, webhooks, /healthz and MCP at /mcp.

One process, one app: requests to /mcp (and /mcp/) go to the MCP streamable-HTTP bridge, everything else to Django.
The ASGI lifespan runs the MCP session manager (Django has no lifespan of its own).
"""

import os
import sys

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotcross.settings")

try:
    django_application = get_asgi_application()
except ImproperlyConfigured as exc:
    # A missing or unusable setting: one line saying what to set, not a traceback (uvicorn exits with status 1).
    print("Hotcross cannot start:", " ".join(str(exc).split()), file=sys.stderr)
    sys.exit(1)

from django.conf import settings

if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    web_application = ASGIStaticFilesHandler(django_application)
else:
    web_application = django_application

from mcp_bridge.http import MCP_PATHS, build_http_app

mcp_application = build_http_app()


async def _routed(scope, receive, send):
    if scope["type"] == "lifespan" or scope.get("path") in MCP_PATHS:
        await mcp_application(scope, receive, send)
    else:
        await web_application(scope, receive, send)


from infra.proxy import govern_uvicorn  # noqa: E402
from infra.request_log import RequestLog  # noqa: E402

# uvicorn wraps this app in its forwarded-headers middleware once imported: trusting only BEHIND_PROXY's addresses.
govern_uvicorn()

# Every HTTP request: a request id (X-Request-ID in and out), one log line with LOG_FORMAT=json, a latency sample.
application = RequestLog(_routed)
