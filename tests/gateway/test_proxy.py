"""An HTTP upstream behind an outbound proxy: the bridge's forwarded calls go through `HTTP_PROXY` unless `NO_PROXY`
names the upstream's host, as the SDK's own client does (`upstream.rpc.env_proxy`, read once per
connection rather than on a thread for every call). The proxy here is real: it relays what it is sent and notes it."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.factories import DeveloperFactory
from tests.support.mcp import run_uvicorn
from tests.support.upstreams import call, gateway_env, post

pytestmark = pytest.mark.django_db(transaction=True)

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "trailer"}


class _Relay(BaseHTTPRequestHandler):
    """A forward proxy for plain HTTP: the request line has the absolute URL; the answer is relayed whole."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the bridge's pool expects
    seen: list[tuple[str, str, bytes]]

    def _relay(self) -> None:
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.seen.append((self.command, self.path, body))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            upstream.request(self.command, target.path or "/", body=body or None, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_DELETE = _relay

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def recording_proxy() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """(the proxy's URL, what it relayed: method, absolute URL, body)."""
    seen: list[tuple[str, str, bytes]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Relay", (_Relay,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def forwarded_calls(seen: list[tuple[str, str, bytes]], upstream: str) -> list[str]:
    """The tool names of the `tools/call` requests the proxy relayed to `upstream`."""
    names = []
    for method, url, body in list(seen):
        if method == "POST" and url == upstream and body:
            message = json.loads(body)
            if isinstance(message, dict) and message.get("method") == "tools/call":
                names.append(message["params"]["name"])
    return names


@pytest.mark.parametrize("bypassed", [False, True], ids=["through-the-proxy", "no-proxy"])
def test_forwarded_calls_use_the_environments_proxy(tmp_path, old_hotcross_upstream, bypassed):
    developer = DeveloperFactory()
    upstream = old_hotcross_upstream  # the session's; only this test's bridge knows this test's proxy
    with recording_proxy() as (proxy, seen):
        env = gateway_env(upstream, HTTP_PROXY=proxy, http_proxy=proxy)
        if bypassed:
            env |= {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        with run_uvicorn(tmp_path, **env) as bridge:
            for number in range(3):  # several calls on the pooled connections
                response = post(bridge, developer.plain_key, call(number, "ping", {}))
                assert response.status_code == 200
                assert response.json()["result"]["isError"] is False, response.text

    if bypassed:
        assert seen == []
    else:
        assert forwarded_calls(seen, upstream) == ["ping", "ping", "ping"]
