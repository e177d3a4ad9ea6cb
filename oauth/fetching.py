"""Fetching Client ID Metadata Documents (CIMD): a `client_id` that is a URL names a JSON document the client
publishes; this server fetches it on first sight (and again when it is stale) and stores it as a client.

Every fetch, `https` or loopback, goes through `resolve` and has the same bounds:

- one deadline for the whole fetch (name resolution, connect, TLS handshake, request, headers and body):
  `HOTCROSS_OAUTH_CIMD_FETCH_SECONDS` (5 s). Each blocking step is given only what is left of it, so a server that
  sends one byte at a time is cut off at the deadline, not after one timeout per read;
- at most `CIMD_MAX_DOCUMENT_SIZE` bytes of body (16 KiB) and `MAX_HEADER_BYTES` of status line and headers;
- django-oauth-toolkit's failure back-off (a URL that failed is not fetched again for `CIMD_FAILURE_BACKOFF_SECONDS`)
  and its cap on fetches in flight per process (`CIMD_MAX_CONCURRENT_FETCHES`);
- no database connection is held while the network is waited on: the thread's connections are given back (to the
  pool, or closed) before the fetch, and a fetch inside a transaction is refused;
- the document is checked before anything is stored (`check_document`): types, sizes, control characters, the
  redirect URI rule, public client with `authorization_code` (+ `refresh_token`) only, its `client_id` is the URL.

`https` documents: django-oauth-toolkit's URL rules and address checks (public addresses only, every resolved address
checked, connected to by address with the certificate checked for the host name, no redirects). Documents at
`http://127.0.0.1:PORT/…` (or `[::1]`) are fetched only when `HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK` is on (DEBUG by
default; the tests set it).

A refusal is a `DocumentRefused` whose message is fixed text meant for the client (it never repeats what the document
or the network said); `oauth.validators` turns it into the OAuth error.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from oauth2_provider import cimd
from oauth2_provider.cimd import CIMDError
from oauth2_provider.settings import oauth2_settings

from oauth.client_values import redirect_uri_problem, unsafe_character

log = logging.getLogger(__name__)

_LOOPBACK_IPS = ("127.0.0.1", "::1")
MAX_HEADER_BYTES = 16 * 1024
MAX_REDIRECT_URIS = 10
MAX_URI_LENGTH = 2000
MAX_NAME_LENGTH = 255  # oauth.Client.name
_OPTIONAL_STRINGS = ("client_uri", "logo_uri", "tos_uri", "policy_uri", "software_id", "software_version", "scope")
# Name resolution has no timeout of its own: it runs here, and the fetch waits for it only until its deadline.
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cimd-resolve")


class DocumentRefused(CIMDError):
    """A metadata document that was not fetched or not accepted. The message is fixed text for the client."""


def deadline_seconds() -> float:
    return float(settings.HOTCROSS_OAUTH_CIMD_FETCH_SECONDS)


def _plain_ascii(text: str) -> bool:
    return all(0x21 <= ord(char) <= 0x7E for char in text)


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


def is_document_url(client_id: str) -> bool:
    """Whether `client_id` names a metadata document this server would fetch (CIMD on; https, or loopback)."""
    if not oauth2_settings.CIMD_ENABLED or not isinstance(client_id, str):
        return False
    return cimd.is_cimd_client_id(client_id) or is_loopback_document_url(client_id)


# --- the document's content --------------------------------------------------------------------------------------


def check_document(client_id: str, document: Any) -> None:
    """Refuse (DocumentRefused, saying why) a document this server will not store as the client `client_id`."""
    if not isinstance(document, dict):
        raise DocumentRefused("The client's metadata document must be a JSON object.")
    if document.get("client_id") != client_id:
        raise DocumentRefused("The metadata document's client_id must be the URL it is published at.")
    if "client_secret" in document or "client_secret_expires_at" in document:
        raise DocumentRefused("A metadata document may not carry a client_secret: such clients are public.")
    if document.get("token_endpoint_auth_method", "none") != "none":
        raise DocumentRefused("The metadata document's token_endpoint_auth_method must be none (a public client).")
    name = document.get("client_name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or unsafe_character(name):
        raise DocumentRefused(
            f"The metadata document's client_name must be a string of at most {MAX_NAME_LENGTH} characters, "
            "without control characters."
        )
    for field in _OPTIONAL_STRINGS:
        value = document.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_URI_LENGTH or unsafe_character(value)):
            raise DocumentRefused(f"The metadata document's {field} must be a short string without control characters.")
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not 1 <= len(uris) <= MAX_REDIRECT_URIS:
        raise DocumentRefused(f"The metadata document's redirect_uris must be a list of 1 to {MAX_REDIRECT_URIS} URIs.")
    for uri in uris:
        if not isinstance(uri, str) or len(uri) > MAX_URI_LENGTH or redirect_uri_problem(uri):
            raise DocumentRefused(
                "The metadata document's redirect_uris must be URIs with https, or http to 127.0.0.1, localhost or "
                "[::1], without spaces, control characters or fragments."
            )
    grants = document.get("grant_types", ["authorization_code"])
    if (
        not isinstance(grants, list)
        or not all(isinstance(grant, str) for grant in grants)
        or "authorization_code" not in grants
        or not set(grants) <= {"authorization_code", "refresh_token"}
    ):
        raise DocumentRefused(
            "The metadata document's grant_types must be authorization_code, with refresh_token or not."
        )
    responses = document.get("response_types", ["code"])
    if not isinstance(responses, list) or set(responses) != {"code"} or len(responses) != 1:
        raise DocumentRefused('The metadata document\'s response_types must be ["code"].')


# --- the fetch ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a document is fetched from: the address connected to, and what the request names."""

    ip: str
    port: int
    host: str  # the Host header
    path: str
    tls_hostname: str | None = None  # https: the name the certificate must be for


class _Replay:
    """The bytes received, as the socket http.client parses a response from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, *args: Any, **kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self._data)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _head_length(data: bytes) -> int | None:
    end = data.find(b"\r\n\r\n")
    return None if end < 0 else end + 4


def _complete(data: bytes) -> bool:
    """Whether the response received so far is whole (its headers, and its body when it says how long it is)."""
    head = _head_length(data)
    if head is None:
        return False
    response = http.client.HTTPResponse(_Replay(data[:head]), method="GET")  # type: ignore[arg-type]
    try:
        response.begin()
    except http.client.HTTPException:
        return True  # no valid response will come of it: `_parse` says so
    if response.status != 200:
        return True
    length = response.getheader("Content-Length")
    return length is not None and length.isdigit() and len(data) - head >= int(length)


def receive(target: Target, deadline: float, body_limit: int) -> bytes:
    """GET `target` and return the raw response (status line, headers, body), all of it before `deadline` (a
    time.monotonic() value) and within the size caps. Raises TimeoutError, OSError, ssl.SSLError or DocumentRefused
    (too large)."""
    sock = socket.create_connection((target.ip, target.port), timeout=_left(deadline))
    try:
        if target.tls_hostname is not None:
            context = ssl.create_default_context()
            sock.settimeout(_left(deadline))  # the handshake as a whole is bounded by the socket's timeout
            sock = context.wrap_socket(sock, server_hostname=target.tls_hostname)
        request = (
            f"GET {target.path} HTTP/1.1\r\nHost: {target.host}\r\n"
            "Accept: application/json, application/*+json\r\nAccept-Encoding: identity\r\n"
            "User-Agent: Hotcross-CIMD\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(_left(deadline))
        sock.sendall(request.encode("ascii"))
        received = bytearray()
        while True:
            sock.settimeout(_left(deadline))
            chunk = sock.recv(16 * 1024)
            if not chunk:
                return bytes(received)
            received += chunk
            head = _head_length(received)
            if (head is None and len(received) > MAX_HEADER_BYTES) or (
                head is not None and (head > MAX_HEADER_BYTES or len(received) - head > 2 * body_limit + 1024)
            ):
                raise DocumentRefused(f"The client's metadata document is larger than {body_limit} bytes.")
            if _complete(bytes(received)):
                return bytes(received)
    finally:
        sock.close()


def _targets(client_id: str, deadline: float) -> list[Target]:
    if not _plain_ascii(client_id):
        raise DocumentRefused("The client_id URL may hold only printable ASCII characters, without spaces.")
    parts = urlsplit(client_id)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if is_loopback_document_url(client_id):
        return [Target(parts.hostname or "", parts.port or 80, parts.netloc, path)]
    try:
        cimd._validate_client_id_url(client_id)
    except CIMDError as exc:
        raise DocumentRefused(
            "The client_id URL must be https with a host and a path, without user, fragment or dot segments."
        ) from exc
    port = parts.port or 443
    hostname = parts.hostname or ""
    future = _resolver.submit(cimd._resolve_and_validate, hostname, port)
    try:
        ips = future.result(timeout=_left(deadline))
    except (FutureTimeout, TimeoutError) as exc:
        raise DocumentRefused("The client_id URL's host name could not be resolved in time.") from exc
    except CIMDError as exc:
        raise DocumentRefused("The client_id URL's host must resolve to public addresses only.") from exc
    return [Target(ip, port, parts.netloc, path, tls_hostname=hostname) for ip in ips]


def _parse(raw: bytes, body_limit: int) -> tuple[Any, int]:
    try:
        response = http.client.HTTPResponse(_Replay(raw), method="GET")  # type: ignore[arg-type]
        response.begin()
        status = response.status
        media_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        cache_control = response.getheader("Cache-Control")
        body = response.read(body_limit + 1) if status == 200 else b""
    except (http.client.HTTPException, ValueError) as exc:
        raise DocumentRefused("The client's metadata document did not come back as a valid HTTP response.") from exc
    if status != 200:
        raise DocumentRefused(f"The client's metadata document URL answered HTTP {status}, not 200.")
    suffixed = media_type.startswith("application/") and media_type.endswith("+json")
    json_type = media_type == "application/json" or suffixed
    if not json_type:
        raise DocumentRefused("The client's metadata document must be served as application/json.")
    if len(body) > body_limit:
        raise DocumentRefused(f"The client's metadata document is larger than {body_limit} bytes.")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DocumentRefused("The client's metadata document is not valid JSON.") from exc
    return document, cimd._effective_max_age(cache_control)


def release_database() -> None:
    """Give back this thread's database connections before waiting on the network. Refuses (CIMDError) inside a
    transaction: its connection cannot be given back. (A test case's own wrapping transaction is let through.)"""
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            if all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
                continue
            raise CIMDError("a metadata document is never fetched inside a database transaction")
        connection.close()


class HotcrossMetadataFetcher:
    """django-oauth-toolkit's `CIMD_METADATA_FETCHER`: `fetch(client_id)` → (document, max-age seconds), checked."""

    def fetch(self, client_id: str) -> tuple[dict[str, Any], int]:
        seconds = deadline_seconds()
        deadline = time.monotonic() + seconds
        body_limit = int(oauth2_settings.CIMD_MAX_DOCUMENT_SIZE)
        release_database()
        raw = None
        for target in _targets(client_id, deadline):
            try:
                raw = receive(target, deadline, body_limit)
                break
            except TimeoutError as exc:
                raise DocumentRefused(f"The client's metadata document did not arrive within {seconds:g} s.") from exc
            except (OSError, ssl.SSLError):
                continue  # the next address, within the same deadline
        if raw is None:
            raise DocumentRefused("The client's metadata document could not be fetched.")
        document, max_age = _parse(raw, body_limit)
        check_document(client_id, document)
        return document, max_age


def resolve(client_id: str, request: Any) -> Any:
    """The stored client for the document at `client_id`, fetched, checked and stored now; DocumentRefused when it
    cannot be (the permission classes, the back-off, the cap on fetches in flight, the fetch, the document)."""
    if not cimd._registration_permitted(request, client_id):
        raise DocumentRefused("This server does not accept metadata documents from that host.")
    backoff_key = cimd._backoff_cache_key(client_id)
    backoff = oauth2_settings.CIMD_FAILURE_BACKOFF_SECONDS
    if cache.get(backoff_key):
        raise DocumentRefused(f"The client's metadata document was refused recently; try again in {backoff} s.")
    with cimd._fetch_slot() as acquired:
        if not acquired:
            log.warning("CIMD fetch of %s skipped: in-flight cap reached", client_id)
            raise DocumentRefused("Too many metadata documents are being fetched now; try again shortly.")
        try:
            return cimd._fetch_validate_upsert(client_id)
        except DocumentRefused as refused:
            log.info("CIMD document at %s refused: %s", client_id, refused)
            cache.set(backoff_key, True, backoff)
            raise
        except CIMDError as exc:
            log.info("CIMD document at %s refused: %s", client_id, exc)
            cache.set(backoff_key, True, backoff)
            raise DocumentRefused("The client's metadata document could not be accepted.") from exc
        except Exception as exc:
            log.exception("CIMD document at %s could not be resolved", client_id)
            cache.set(backoff_key, True, backoff)
            raise DocumentRefused("The client's metadata document could not be accepted.") from exc
