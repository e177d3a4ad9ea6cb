"""Client ID Metadata Documents: a `client_id` that is a URL is fetched (here from a document server on 127.0.0.1,
allowed by HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK only), validated and stored as a self-registered client."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache
from django.test import Client

from oauth.models import Client as OAuthClient
from tests.factories import DeveloperFactory
from tests.support.oauth import REDIRECT, allow, exchange, new_flow, sign_in_with_key

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def document_server(documents: dict[str, tuple[int, bytes, dict[str, str]]]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, headers = documents.get(self.path, (404, b"", {}))
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
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
    cache.clear()


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
