"""Fetching Client ID Metadata Documents.

`https` documents: django-oauth-toolkit's `SafeMetadataFetcher` (public addresses only, resolved once and connected
to, no redirects, a timeout, a size cap). Documents at `http://127.0.0.1:PORT/…` (or `[::1]`) are fetched only when
`HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK` is on (DEBUG by default; the tests set it): the same timeout, size cap and no
redirects.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from oauth2_provider.cimd import CIMDError, SafeMetadataFetcher
from oauth2_provider.settings import oauth2_settings

_LOOPBACK_IPS = ("127.0.0.1", "::1")


def is_loopback_document_url(client_id: str) -> bool:
    if not getattr(settings, "HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK", False) or not client_id:
        return False
    try:
        parts = urlsplit(client_id)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in _LOOPBACK_IPS
        and port is not None
        and bool(parts.path)
        and not parts.fragment
        and not parts.username
    )


class HotcrossMetadataFetcher(SafeMetadataFetcher):
    def fetch(self, client_id: str) -> tuple[dict[str, Any], int]:
        if not is_loopback_document_url(client_id):
            return super().fetch(client_id)
        parts = urlsplit(client_id)
        timeout = oauth2_settings.CIMD_FETCH_TIMEOUT_SECONDS
        pool = urllib3.HTTPConnectionPool(
            host=parts.hostname, port=parts.port, timeout=urllib3.Timeout(total=timeout), retries=False, maxsize=1
        )
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            response = pool.urlopen(
                "GET", path, headers={"Accept": "application/json"}, redirect=False, preload_content=False
            )
            try:
                return self._read_document(response)
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise CIMDError(f"could not fetch client_id document: {exc}") from exc
        finally:
            pool.close()
