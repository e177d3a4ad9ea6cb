"""ASGI entry point: `uvicorn hotcross.asgi:application` serves the admin, webhooks, /healthz and MCP at /mcp.

One process, one app: requests to /mcp (and /mcp/) go to the MCP streamable-HTTP bridge, everything else to Django.
The ASGI lifespan runs the MCP session manager (Django has no lifespan of its own).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotcross.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402  (after setup)

if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    web_application = ASGIStaticFilesHandler(django_application)
else:
    web_application = django_application

from mcp_bridge.http import MCP_PATHS, build_http_app  # noqa: E402  (after setup: loads the tool modules)

mcp_application = build_http_app()


async def application(scope, receive, send):
    if scope["type"] == "lifespan" or scope.get("path") in MCP_PATHS:
        await mcp_application(scope, receive, send)
    else:
        await web_application(scope, receive, send)
