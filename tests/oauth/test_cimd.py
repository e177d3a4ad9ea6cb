"""Client ID Metadata Documents: a `client_id` that is a URL is fetched (here from a document server on 127.0.0.1,
allowed by HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK only), validated and stored as a self-registered client; a fetch has one
deadline (HOTCROSS_OAUTH_CIMD_FETCH_SECONDS, shrunk here), a size cap, the back-off and the cap on fetches in flight,
holds no database connection, and a hostile document is an OAuth error, never a 500."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache
from django.db import connections
from django.test import Client

from oauth import fetching
from oauth.models import Client as OAuthClient
from tests.factories import DeveloperFactory
from tests.support.oauth import REDIRECT, allow, exchange, new_flow, sign_in_with_key

pytestmark = pytest.mark.django_db

DEADLINE = 0.5  # HOTCROSS_OAUTH_CIMD_FETCH_SECONDS in these tests
Document = tuple[int, bytes, dict[str, str]] | Callable[[BaseHTTPRequestHandler], None]


@contextlib.contextmanager
def document_server(documents: dict[str, Document], hits: list[str] | None = None) -> Iterator[str]:
    """Serves `documents` by path: (status, body, headers), or a function that answers on the handler itself; the
    paths asked for go to `hits`."""
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if hits is not None:
                hits.append(self.path)
            document = documents.get(self.path, (404, b"", {}))
            if callable(document):
                self.stopping = stopping
                try:
                    document(self)
                except OSError:  # the fetcher gave up and closed the connection
                    pass
                return
            status, body, headers = document
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()


def _document(client_id: str, **overrides: object) -> bytes:
    return json.dumps(
        {
            "client_id": client_id,
            "client_name": "Metadata document client",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            **overrides,
        }
    ).encode()


@pytest.fixture(autouse=True)
def _loopback_documents(settings):
    settings.HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK = True
    settings.HOTCROSS_OAUTH_CIMD_FETCH_SECONDS = DEADLINE
    cache.clear()


def drip(body: bytes, *, head_too: bool = False, every: float = 0.05) -> Callable[[BaseHTTPRequestHandler], None]:
    """A document sent one byte every `every` seconds (its status line and headers too, with `head_too`)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        if not head_too:
            handler.wfile.write(head)
            handler.wfile.flush()
        for byte in (head if head_too else b"") + body:
            if handler.stopping.wait(every):  # type: ignore[attr-defined]
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    return answer


def token_request(client_id: str):
    """An anonymous token request naming `client_id` (what the review sent 25 of at once)."""
    return Client().post(
        "/oauth/token/",
        {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT, "client_id": client_id},
    )


def test_a_metadata_document_client_signs_in_and_gets_a_token():
    documents: dict = {}
    with document_server(documents) as base:
        client_id = f"{base}/client.json"
        documents["/client.json"] = (200, _document(client_id), {})
        developer = DeveloperFactory()
        browser = Client()
        sign_in_with_key(browser, developer.plain_key)
        flow = new_flow(client_id)
        page = browser.get(flow.authorize_url())
        assert "Metadata document client" in page.content.decode() and "unverified" in page.content.decode()
        code = allow(browser, flow)
        assert exchange(browser, flow, code).status_code == 200
    stored = OAuthClient.objects.get(client_id=client_id)
    assert stored.registration_source == OAuthClient.RegistrationSource.CIMD


def test_loopback_documents_are_not_fetched_unless_allowed(settings):
    settings.HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK = False
    documents: dict = {}
    with document_server(documents) as base:
        client_id = f"{base}/client.json"
        documents["/client.json"] = (200, _document(client_id), {})
        browser = Client()
        sign_in_with_key(browser, DeveloperFactory().plain_key)
        response = browser.get(new_flow(client_id).authorize_url())
    assert response.status_code == 400
    assert not OAuthClient.objects.exists()


@pytest.mark.parametrize(
    "problem",
    ["http_redirect", "too_big", "other_client_id", "redirects", "not_json"],
)
def test_bad_documents_are_refused_and_store_nothing(problem):
    documents: dict = {}
    with document_server(documents) as base:
        client_id = f"{base}/client.json"
        if problem == "http_redirect":
            documents["/client.json"] = (200, _document(client_id, redirect_uris=["http://example.com/cb"]), {})
        elif problem == "too_big":
            documents["/client.json"] = (200, _document(client_id, client_name="x" * 20_000), {})
        elif problem == "other_client_id":
            documents["/client.json"] = (200, _document(f"{base}/other.json"), {})
        elif problem == "redirects":
            documents["/client.json"] = (302, b"", {"Location": "http://169.254.169.254/latest"})
        else:
            documents["/client.json"] = (200, b"<html>", {"Content-Type": "text/html"})
        browser = Client()
        sign_in_with_key(browser, DeveloperFactory().plain_key)
        response = browser.get(new_flow(client_id).authorize_url())
    assert response.status_code == 400
    assert not OAuthClient.objects.exists()


# --- one deadline per fetch, no database connection held, the same caps on every path ------------------------------


@pytest.mark.parametrize("head_too", [False, True], ids=["body", "status-line-and-headers"])
def test_a_document_sent_a_byte_at_a_time_is_refused_at_the_deadline(head_too):
    documents: dict = {}
    with document_server(documents) as base:
        client_id = f"{base}/drip"
        documents["/drip"] = drip(_document(client_id), head_too=head_too)
        started = time.monotonic()
        response = token_request(client_id)
        took = time.monotonic() - started
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert f"did not arrive within {DEADLINE:g} s" in response.json()["error_description"]
    assert DEADLINE - 0.1 <= took < DEADLINE + 0.5
    assert not OAuthClient.objects.exists()


def test_a_tls_handshake_that_never_comes_is_cut_off_at_the_deadline():
    """The https path's TLS handshake (the review's slow TLS server took 15.3 s): a server that accepts and stays
    silent."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        target = fetching.Target("127.0.0.1", silent.getsockname()[1], "example.com", "/c", tls_hostname="example.com")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            fetching.receive(target, time.monotonic() + DEADLINE, 16 * 1024)
        assert time.monotonic() - started < DEADLINE + 0.3


@pytest.mark.django_db(transaction=True)
def test_no_database_connection_is_held_while_a_document_is_fetched():
    seen: dict = {}
    request_thread_db = connections["default"]  # the test client runs the view in this thread

    def answer(handler: BaseHTTPRequestHandler) -> None:
        seen["open"] = request_thread_db.connection is not None
        seen["in_transaction"] = request_thread_db.in_atomic_block
        body = _document(client_id)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    documents: dict = {}
    with document_server(documents) as base:
        client_id = f"{base}/client.json"
        documents["/client.json"] = answer
        browser = Client()
        sign_in_with_key(browser, DeveloperFactory().plain_key)
        page = browser.get(new_flow(client_id).authorize_url())
    assert page.status_code == 200
    assert seen == {"open": False, "in_transaction": False}
    assert OAuthClient.objects.filter(client_id=client_id).exists()


def test_a_refused_loopback_document_is_backed_off_like_an_https_one():
    documents: dict = {}
    asked: list[str] = []
    with document_server(documents, asked) as base:
        client_id = f"{base}/client.json"
        documents["/client.json"] = (200, _document(client_id, client_name="bad\x00name"), {})
        first = token_request(client_id)
        again = token_request(client_id)
    assert asked == ["/client.json"]
    assert first.status_code == again.status_code == 401
    assert "client_name" in first.json()["error_description"]
    assert "refused recently" in again.json()["error_description"]


@pytest.mark.django_db(transaction=True)
def test_fetches_in_flight_are_capped_on_the_loopback_path_too(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "CIMD_MAX_CONCURRENT_FETCHES": 1}
    fetching_now = threading.Event()
    documents: dict = {}

    def slow(handler: BaseHTTPRequestHandler) -> None:
        fetching_now.set()
        drip(b"{}")(handler)

    with document_server(documents) as base:
        documents["/slow"] = slow
        documents["/other.json"] = (200, _document(f"{base}/other.json"), {})
        holder = threading.Thread(target=token_request, args=(f"{base}/slow",))
        holder.start()
        try:
            assert fetching_now.wait(5)
            started = time.monotonic()
            response = token_request(f"{base}/other.json")
            took = time.monotonic() - started
        finally:
            holder.join()
            connections.close_all()
    assert response.status_code == 401
    assert "Too many metadata documents" in response.json()["error_description"]
    assert took < 0.3


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_name": "nul\x00in the name"},
        {"client_name": "escape \x1b[31m"},
        {"client_name": "bidi \u202eevil"},
        {"client_name": "lone surrogate \ud800"},
        {"client_name": 42},
        {"client_name": "x" * 256},
        {"redirect_uris": ["http://127.0.0.1:33418/cb\x00"]},
        {"redirect_uris": ["http://127.0.0.1:33418/a https://evil.example/cb"]},
        {"redirect_uris": "http://127.0.0.1:33418/callback"},
        {"redirect_uris": [REDIRECT] * 11},
        {"redirect_uris": [7]},
        {"grant_types": ["client_credentials"]},
        {"grant_types": "authorization_code"},
        {"response_types": ["token"]},
        {"token_endpoint_auth_method": "client_secret_basic"},
        {"client_secret": "s3cret"},
        {"client_uri": ["not", "a", "string"]},
    ],
    ids=lambda overrides: "-".join(f"{k}={str(v)[:12]!r}" for k, v in overrides.items()),
)
def test_hostile_documents_are_an_oauth_error_and_store_nothing(overrides):
    documents: dict = {}
    with document_server(documents) as base:
        client_id = f"{base}/client.json"
        documents["/client.json"] = (200, _document(client_id, **overrides), {})
        browser = Client()
        sign_in_with_key(browser, DeveloperFactory().plain_key)
        page = browser.get(new_flow(client_id).authorize_url())
        cache.clear()  # the back-off: the token endpoint fetches it again
        token = token_request(client_id)
    assert page.status_code == 400
    assert "metadata document" in page.content.decode()
    assert token.status_code == 401
    assert token.json()["error"] == "invalid_client"
    assert "metadata document" in token.json()["error_description"]
    assert not OAuthClient.objects.exists()


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000 + b"]" * 5000, b'{"client_id": 1e999999}', b"\xff\xfe not utf-8"],
    ids=["deeply-nested", "huge-number", "not-utf8"],
)
def test_documents_that_break_json_parsers_are_refused(body):
    documents: dict = {}
    with document_server(documents) as base:
        client_id = f"{base}/client.json"
        documents["/client.json"] = (200, body, {})
        response = token_request(client_id)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert not OAuthClient.objects.exists()
