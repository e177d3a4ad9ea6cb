"""What a client's registered values may hold, whoever registers it (RFC 7591, a metadata document, staff): redirect
URIs (`redirect_uri_problem`) and names (`unsafe_character`). Pure: no model, no database."""

from __future__ import annotations

import ipaddress
import unicodedata
from urllib.parse import urlsplit


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.1 (any 127/8), ::1 and localhost: where a native client's own redirect listener runs."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redirect_uri_problem(uri: str) -> str | None:
    """Why a redirect URI cannot be registered, or None: https anywhere, http only to a loopback address; printable
    ASCII without spaces (a control character or a space would split or corrupt what is stored)."""
    if not uri or any(not 0x21 <= ord(char) <= 0x7E for char in uri):
        return "A redirect URI must be printable ASCII, without spaces or control characters."
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return f"{uri!r} is not a URL."
    if parts.fragment:
        return f"{uri!r} has a fragment; redirect URIs may not."
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and is_loopback_host(host):
        return None
    return f"{uri!r} must use https, or http to 127.0.0.1, localhost or [::1] (a native client's own listener)."


def unsafe_character(text: str) -> bool:
    """Whether `text` holds a character that has no place in a name shown to people or stored: control characters
    (NUL, newlines, escapes), surrogates, unassigned or private-use code points, line separators and invisible
    formatting such as bidirectional overrides (joiners excepted: emoji use them)."""
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp"):
            return True
        if category == "Cf" and char not in "\u200c\u200d":
            return True
    return False
