"""`GET /.well-known/jwks.json`: the public key that signs the caller's assertion the gateway sends an HTTP upstream
(`upstream.assertion`), for upstreams to verify `X-Hotcross-Caller` with any JOSE library (docs/gateway.md)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from upstream import assertion

logger = logging.getLogger(__name__)


@require_GET
def jwks(request: HttpRequest) -> JsonResponse:
    """The key set (made on first use, as the forwarding side does); 503 when the key file cannot be read."""
    try:
        keys = assertion.jwks(settings.HOTCROSS_MCP_UPSTREAM_ASSERTION_KEY)
    except assertion.AssertionKeyError as exc:
        logger.error("jwks: %s", exc)
        return JsonResponse({"error": "the signing key is not available"}, status=503)
    response = JsonResponse(keys)
    response["Cache-Control"] = "public, max-age=300"
    return response
