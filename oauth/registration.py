"""Who may register a client (RFC 7591): anyone, as public clients do, but at most
`HOTCROSS_OAUTH_REGISTRATIONS_PER_HOUR` registrations per client address per hour (Django's cache counts them;
the address is the one login throttling uses, `hotcross.proxy.client_ip`)."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from hotcross.proxy import client_ip

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
