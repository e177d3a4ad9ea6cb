"""Who may register a client (RFC 7591) and what: anyone, as public clients do, but at most
`HOTCROSS_OAUTH_REGISTRATIONS_PER_HOUR` registrations per client address per hour (Django's cache counts them;
the address is the one login throttling uses, `infra.proxy.client_ip`); only public clients using the
authorization code grant (`registered_metadata`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from infra.proxy import client_ip

WINDOW_SECONDS = 3600


def registration_allowed(request: HttpRequest) -> bool:
    """Count this registration against the client address's hourly allowance; False once it is used up."""
    limit = settings.HOTCROSS_OAUTH_REGISTRATIONS_PER_HOUR
    if limit <= 0:
        return False
    key = f"hotcross:oauth:dcr:{client_ip(request)}"
    cache.add(key, 0, WINDOW_SECONDS)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, WINDOW_SECONDS)
        count = 1
    return count <= limit


# --- what may be registered -------------------------------------------------------------------------------------------

MAX_REDIRECT_URIS = 10
MAX_URI_LENGTH = 2000
MAX_NAME_LENGTH = 255  # oauth.Client.name
GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_TYPES = ("code",)


class RegistrationRefused(Exception):
    """Registration metadata this server does not take: the RFC 7591 §3.2.2 error code and a description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _metadata_refused(description: str) -> RegistrationRefused:
    return RegistrationRefused("invalid_client_metadata", description)


def _string_list(data: dict[str, Any], field: str, default: list[str]) -> list[str]:
    value = data.get(field, default)
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise _metadata_refused(f"{field} must be a non-empty array of strings.")
    return value


def registered_metadata(data: Any) -> dict[str, Any]:
    """What a registration (RFC 7591) may ask for, checked: a public client (`token_endpoint_auth_method` none, the
    default here: no secret is ever issued) using `authorization_code` (+ `refresh_token`) and response type `code`,
    1–10 redirect URIs (https, or http to a loopback address), a name without control characters. Returns the stored
    client's fields; raises RegistrationRefused (`invalid_client_metadata`, `invalid_redirect_uri`)."""
    from oauth.client_values import redirect_uri_problem, unsafe_character
    from oauth.models import Client

    if not isinstance(data, dict):
        raise _metadata_refused("The request body must be a JSON object.")
    method = data.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise _metadata_refused(
            "token_endpoint_auth_method must be none: this server registers public clients only (PKCE, no secret)."
        )
    if "client_secret" in data or "client_secret_expires_at" in data:
        raise _metadata_refused("A public client has no client_secret.")
    grants = _string_list(data, "grant_types", ["authorization_code"])
    if "authorization_code" not in grants or not set(grants) <= set(GRANT_TYPES):
        raise _metadata_refused("grant_types must be authorization_code, with refresh_token or not.")
    responses = _string_list(data, "response_types", ["code"])
    if set(responses) != set(RESPONSE_TYPES):
        raise _metadata_refused('response_types must be ["code"].')
    name = data.get("client_name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
        raise _metadata_refused(f"client_name must be a string of at most {MAX_NAME_LENGTH} characters.")
    if unsafe_character(name):
        raise _metadata_refused("client_name may not hold control characters (NUL, newlines, escapes, bidi controls).")
    uris = data.get("redirect_uris")
    if not isinstance(uris, list) or not 1 <= len(uris) <= MAX_REDIRECT_URIS:
        raise RegistrationRefused(
            "invalid_redirect_uri", f"redirect_uris must be an array of 1 to {MAX_REDIRECT_URIS} URIs."
        )
    for uri in uris:
        if not isinstance(uri, str) or len(uri) > MAX_URI_LENGTH:
            raise RegistrationRefused(
                "invalid_redirect_uri", f"Each redirect URI must be a string of at most {MAX_URI_LENGTH} characters."
            )
        problem = redirect_uri_problem(uri)
        if problem is not None:
            raise RegistrationRefused("invalid_redirect_uri", problem)
    return {
        "name": name,
        "redirect_uris": " ".join(uris),
        "client_type": Client.CLIENT_PUBLIC,
        "authorization_grant_type": Client.GRANT_AUTHORIZATION_CODE,
    }
