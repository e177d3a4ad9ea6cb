"""Who the client is, behind a proxy or not: the one rule for every limit that counts per address (django-axes' login
throttling through AXES_CLIENT_IP_CALLABLE, OAuth registrations) and for uvicorn's forwarded headers.

`BEHIND_PROXY` names the proxy by its addresses (`settings.PROXY_ADDRESSES`). X-Forwarded-For and X-Forwarded-Proto
are trusted only from those addresses: the client's address is then the rightmost X-Forwarded-For entry that is not a
proxy (the one our proxy appended; addresses further left were sent by the client and could be anything). Without a
named proxy forwarded headers mean nothing, from anyone: the connection's address counts.

uvicorn applies forwarded headers itself before the app sees a request, trusting 127.0.0.1 and ::1 unless told
otherwise (`--forwarded-allow-ips`, `FORWARDED_ALLOW_IPS`): a client on the same host, or any client behind a local
proxy that passes the header on, could choose its address for every request and escape every limit.
`hotcross.serve` gives uvicorn the setting (`uvicorn_options`); `govern_uvicorn`, called when uvicorn loads
`hotcross.asgi`, makes a plain `uvicorn hotcross.asgi:application` (any flags) follow it too.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django.http import HttpRequest

_OFF = frozenset({"", "false", "0", "no", "off", "n", "f"})
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_addresses(value: str) -> list[str]:
    """BEHIND_PROXY's value: the proxy's addresses (IPs or networks, comma-separated), or nothing for false/empty.
    `true` alone is refused: trusting forwarded headers from anyone would let every client choose its address."""
    text = value.strip()
    if text.lower() in _OFF:
        return []
    if text.lower() in {"true", "1", "yes", "on", "y", "t"}:
        raise ImproperlyConfigured(
            "BEHIND_PROXY must name the proxy by its addresses (e.g. BEHIND_PROXY=10.0.0.5 or 10.0.0.0/24), or be "
            "false: forwarded headers are trusted only from those addresses."
        )
    addresses = []
    for part in text.split(","):
        part = part.strip()
        try:
            addresses.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(
                f"BEHIND_PROXY must be IP addresses or networks separated by commas ({part!r} is neither), or false."
            ) from None
    return addresses


def _networks(addresses: Sequence[str]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(address, strict=False) for address in addresses)


def is_proxy(address: str, networks: Sequence[_Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address (normalised), or None when there is no usable one."""
    address = request.META.get("REMOTE_ADDR") or None
    networks = _networks(settings.PROXY_ADDRESSES) if settings.BEHIND_PROXY else ()
    if address is not None and networks and is_proxy(address, networks):
        # Sent by our proxy (uvicorn did not apply the header: another server, a test client): the rightmost entry
        # that is not a proxy is the one our proxies appended.
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        outside = [part for part in forwarded if not is_proxy(part, networks)]
        if outside:
            address = outside[-1]
        elif forwarded:
            address = forwarded[0]
    if address is None:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def uvicorn_options() -> dict[str, Any]:
    """uvicorn's `proxy_headers` and `forwarded_allow_ips` as BEHIND_PROXY says."""
    addresses = list(settings.PROXY_ADDRESSES)
    return {"proxy_headers": bool(addresses), "forwarded_allow_ips": addresses or []}


def govern_uvicorn() -> None:
    """When uvicorn is loading the app (its `Config.load` imports `hotcross.asgi`, then wraps the app in its
    ProxyHeadersMiddleware with `--forwarded-allow-ips`, default 127.0.0.1): make that wrapping follow BEHIND_PROXY
    instead, so however uvicorn was started, forwarded headers are trusted only from the named proxy."""
    config = sys.modules.get("uvicorn.config")
    middleware = getattr(config, "ProxyHeadersMiddleware", None)
    if middleware is None or getattr(middleware, "hotcross", False):
        return
    config.ProxyHeadersMiddleware = _following_setting(middleware)


def _following_setting(middleware: Callable[..., Any]) -> Callable[..., Any]:
    def proxy_headers(app: Any, trusted_hosts: Any = None) -> Any:
        addresses = list(settings.PROXY_ADDRESSES)
        return middleware(app, trusted_hosts=addresses) if addresses else app

    proxy_headers.hotcross = True  # type: ignore[attr-defined]
    return proxy_headers
