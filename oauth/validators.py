"""django-oauth-toolkit's request validator, with what Hotcross adds:

- RFC 8707: a token asked for without a `resource` is bound to `/mcp` (the one resource this server protects), so
  every token has an audience the MCP endpoint checks.
- A replayed authorization code (RFC 6749 §4.1.2) revokes the tokens it issued.
- Client ID Metadata Documents, `https` and (with `HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK`) `http://127.0.0.1`, all go
  through `oauth.fetching.resolve` (one deadline, size cap, back-off, fetch cap, no database connection held, the
  document checked). A refused document is `invalid_request` (400) at the authorization endpoint and
  `invalid_client` (401) at the token endpoint, with the reason as `error_description`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import IntegrityError
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_refresh_token_model,
)
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

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

    # --- clients named by a metadata document (CIMD) ---------------------------------------------------------------

    def _load_application(self, client_id: str, request: Any) -> Any:
        if not fetching.is_document_url(client_id):
            return super()._load_application(client_id, request)
        Application = get_application_model()
        cached = request.client
        if isinstance(cached, Application) and cached.client_id == client_id and cached.is_usable(request):
            return cached
        request.client = None
        if getattr(request, "hotcross_document_refused", None) is not None:
            return None  # refused once in this request: not fetched again
        client = Application.objects.filter(client_id=client_id).first()
        stale = (
            client is not None
            and client.registration_source == Application.RegistrationSource.CIMD
            and client.cimd_expires_at is not None
            and timezone.now() > client.cimd_expires_at
        )
        if client is None or stale:
            try:
                client = fetching.resolve(client_id, request)
            except fetching.DocumentRefused as refused:
                if client is None:
                    request.hotcross_document_refused = str(refused)
                    return None
                # A stale document that cannot be fetched again now: the last good one stays (the library's rule).
        if client is None or not client.is_usable(request):
            return None
        request.client = client
        return client

    def validate_client_id(self, client_id: str, request: Any, *args: Any, **kwargs: Any) -> bool:
        if super().validate_client_id(client_id, request, *args, **kwargs):
            return True
        refused = getattr(request, "hotcross_document_refused", None)
        if refused is not None:  # the authorization endpoint: fatal, never redirected
            raise errors.InvalidClientIdError(description=refused, request=request)
        return False

    def authenticate_client_id(self, client_id: str, request: Any, *args: Any, **kwargs: Any) -> bool:
        if super().authenticate_client_id(client_id, request, *args, **kwargs):
            return True
        self._refuse_document(request)
        return False

    def client_authentication_required(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        required = super().client_authentication_required(request, *args, **kwargs)
        if request.client is None:
            self._refuse_document(request)
        return required

    def _refuse_document(self, request: Any) -> None:
        refused = getattr(request, "hotcross_document_refused", None)
        if refused is not None:  # the token endpoint: invalid_client, 401
            raise errors.InvalidClientError(description=refused, request=request)
