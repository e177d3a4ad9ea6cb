"""django-oauth-toolkit's request validator, with what Hotcross adds:

- RFC 8707: tokens are for this server's MCP resource (`/mcp`) only. A token asked for without a `resource` is bound
  to it; a `resource` that is anything else gets `invalid_target` (RFC 8707 §2), at the authorization endpoint (an
  error redirect) and at the token endpoint (code exchange and refresh), so no token has a second audience.
- A replayed authorization code (RFC 6749 §4.1.2) revokes the tokens it issued.
- Client ID Metadata Documents, `https` and (with `HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK`) `http://127.0.0.1`, all go
  through `oauth.fetching.resolve` (one deadline, size cap, back-off, fetch cap, no database connection held, the
  document checked). A refused document is `invalid_request` (400) at the authorization endpoint and
  `invalid_client` (401) at the token endpoint, with the reason as `error_description`.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.db import IntegrityError
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_refresh_token_model,
)
from oauth2_provider.oauth2_validators import OAuth2Validator, _parse_and_validate_uri
from oauthlib.oauth2.rfc6749 import errors

from oauth import fetching
from oauth.authentication import mcp_resource


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def is_mcp_resource(uri: object) -> bool:
    """Whether `uri` names this server's MCP resource (RFC 8707 resource indicator), compared as URLs: scheme and host
    case-insensitively, the default port, dot segments and a trailing slash; a query makes it another resource."""
    if uri == mcp_resource():
        return True
    if not isinstance(uri, str) or "?" in uri:
        return False
    ours = _parse_and_validate_uri(mcp_resource())
    return ours is not None and _parse_and_validate_uri(uri) == ours


def _not_ours(request: Any) -> errors.OAuth2Error:
    return errors.CustomOAuth2Error(
        error="invalid_target",
        description=f"This server issues tokens only for its MCP server, {mcp_resource()}: leave resource out or ask "
        "for that one.",
        request=request,
    )


def _requested_resources(request: Any) -> list[Any]:
    """The `resource` values of an authorization request: the consent form's list, or every one in the query."""
    value = getattr(request, "resource", None)
    if isinstance(value, list):
        return value
    query = urlsplit(request.uri or "").query
    return [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "resource"]


def _token_request_resources(request: Any) -> list[Any]:
    """The `resource` values of a token request (the parameter may repeat)."""
    values = [v for k, v in (getattr(request, "decoded_body", None) or []) if k == "resource"]
    if values:
        return values
    value = getattr(request, "resource", None)
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, str) and value.strip() else []


class HotcrossValidator(OAuth2Validator):
    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        # Every token request, once its client is known: a resource asked for that is not ours is invalid_target here
        # (a JSON error), before any token is made.
        if not all(is_mcp_resource(uri) for uri in _token_request_resources(request)):
            raise _not_ours(request)
        return super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs)

    def validate_refresh_token(self, refresh_token: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            return False
        # A refresh token issued before this rule with a second audience: refused, the client signs in again.
        if not all(is_mcp_resource(uri) for uri in request.refresh_token_instance.resource or []):
            raise _not_ours(request)
        return True

    def _check_and_set_request_resource(self, request: Any) -> None:
        super()._check_and_set_request_resource(request)
        # What was asked for, or what the grant or refresh token carries (rows from before this rule too).
        if not all(is_mcp_resource(uri) for uri in request.resource):
            raise _not_ours(request)
        request.resource = [mcp_resource()]

    def validate_response_type(
        self, client_id: str, response_type: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        # Called on every authorization request, after the client and its redirect URI are known good: a refusal here
        # goes back to the client's redirect URI as `error=invalid_target`.
        if not all(is_mcp_resource(uri) for uri in _requested_resources(request)):
            raise _not_ours(request)
        return super().validate_response_type(client_id, response_type, client, request, *args, **kwargs)

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
            from accounts import check_cache

            check_cache.clear()
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
