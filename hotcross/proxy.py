"""The client's address, for admin login throttling (django-axes' AXES_CLIENT_IP_CALLABLE).

Without a proxy it is the connection's address (uvicorn already applies X-Forwarded-For from proxies it trusts:
`--forwarded-allow-ips`, default 127.0.0.1). With BEHIND_PROXY=true it is the last address in X-Forwarded-For: the
one our own proxy appended. Addresses further left were sent by the client and could be anything, so they are never
used: an attacker who could choose its address would never be locked out.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    address = request.META.get("REMOTE_ADDR") or None
    if settings.BEHIND_PROXY:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if forwarded and forwarded[-1]:
            address = forwarded[-1]
    if address is None:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None
