"""django-oauth-toolkit's request validator, with what Hotcross adds:

- RFC 8707: a token asked for without a `resource` is bound to `/mcp` (the one resource this server protects), so
  every token has an audience the MCP endpoint checks.
- A replayed authorization code (RFC 6749 §4.1.2) revokes the tokens it issued.
- Client ID Metadata Documents at `http://127.0.0.1` (loopback) when `HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK` is on
  (DEBUG, or the tests); `https` ones are django-oauth-toolkit's own SSRF-hardened fetch.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import IntegrityError
from oauth2_provider import cimd
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator

from oauth import fetching
from oauth.authentication import mcp_resource


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


class HotcrossValidator(OAuth2Validator):
    def _check_and_set_request_resource(self, request: Any) -> None:
        super()._check_and_set_request_resource(request)
        if not request.resource:
            request.resource = [mcp_resource()]

    def invalidate_authorization_code(self, client_id: str, code: str, request: Any, *args: Any, **kwargs: Any) -> None:
        from oauth.models import SpentCode

        grant = get_grant_model().objects.filter(code=code, application=request.client).first()
        super().invalidate_authorization_code(client_id, code, request, *args, **kwargs)
        if grant is not None:
            try:
                SpentCode.objects.create(code_hash=_code_hash(code), client=request.client, user=grant.user)
            except IntegrityError:
                pass

    def validate_code(self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        if super().validate_code(client_id, code, client, request, *args, **kwargs):
            return True
        from oauth.models import SpentCode

        spent = SpentCode.objects.filter(code_hash=_code_hash(code), client=client).first()
        if spent is not None:
            # The code was used before: whoever holds it now may have stolen it. End what it issued.
            for token in get_refresh_token_model().objects.filter(user=spent.user, application=client, revoked=None):
                token.revoke()
            get_access_token_model().objects.filter(user=spent.user, application=client).delete()
            from accounts import key_cache

            key_cache.clear()
        return False

    def _load_application(self, client_id: str, request: Any) -> Any:
        client = super()._load_application(client_id, request)
        if client is None and fetching.is_loopback_document_url(client_id):
            try:
                client = cimd._fetch_validate_upsert(client_id)
            except cimd.CIMDError:
                return None
            if client is not None and client.is_usable(request):
                request.client = client
                return client
            return None
        return client
