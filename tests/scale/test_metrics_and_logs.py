"""`/metrics` (who may read it, what it counts) and the request log (`LOG_FORMAT=json`, X-Request-ID)."""

from __future__ import annotations

import json
import os
import re

import anyio
import httpx2
import pytest
from django.contrib.auth.models import User

from accounts.authentication import authenticate_key
from accounts.exceptions import KeyRefused
from tests.factories import DeveloperFactory
from tests.support.mcp import http_client, server_env
from tests.support.metrics import TOKEN, sample
from tests.support.oauth import issue_token
from tests.support.servers import uvicorn


@pytest.mark.django_db
class TestAccess:
    def test_the_token_or_a_staff_login_reads_it_and_nobody_else(self, client, settings):
        settings.HOTCROSS_METRICS_TOKEN = TOKEN
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200

        anonymous = client.get("/metrics")
        assert anonymous.status_code == 401 and "Bearer" in anonymous["WWW-Authenticate"]
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401

        client.force_login(User.objects.create_user("pat", "pat@example.test", "pw-pat-123"))
        assert client.get("/metrics").status_code == 403

        client.force_login(User.objects.create_user("sam", "sam@example.test", "pw-sam-123", is_staff=True))
        response = client.get("/metrics")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")

    def test_without_a_token_set_no_bearer_gets_in(self, client, settings):
        settings.HOTCROSS_METRICS_TOKEN = ""
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 401

    def test_key_checks_are_counted_by_outcome(self, client, settings):
        settings.HOTCROSS_METRICS_TOKEN = TOKEN

        def read() -> str:
            return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()

        before = read()
        good = DeveloperFactory()
        revoked = DeveloperFactory(api_key_revoked_at="2026-01-01T00:00:00Z")
        authenticate_key(good.plain_key)
        authenticate_key(good.plain_key)  # warm: counted too
        with pytest.raises(KeyRefused):
            authenticate_key(revoked.plain_key)
        after = read()
        key_checks = "hotcross_key_checks_total"
        assert sample(after, key_checks, outcome="ok") - sample(before, key_checks, outcome="ok") == 2
        revoked_before = sample(before, key_checks, outcome="key_revoked")
        assert sample(after, key_checks, outcome="key_revoked") - revoked_before == 1


@pytest.mark.django_db(transaction=True)
def test_a_server_with_json_logs_logs_each_request_with_its_id_and_developer_never_the_key(tmp_path):
    developer = DeveloperFactory()

    def environment(base: str) -> dict[str, str]:  # its own address: where its OAuth tokens are bound (RFC 8707)
        return server_env(LOG_FORMAT="json", HOTCROSS_METRICS_TOKEN=TOKEN, HOTCROSS_PUBLIC_URL=base)

    with uvicorn(tmp_path, environment) as server:
        given = httpx2.get(f"{server.base}/healthz", headers={"X-Request-ID": "trace-abc.123"}, timeout=10)
        made = httpx2.get(f"{server.base}/healthz", timeout=10)
        hostile = httpx2.get(f"{server.base}/healthz", headers={"X-Request-ID": "x" * 500}, timeout=10)
        access_token = issue_token(developer, f"{server.base}/mcp")

        async def scenario():
            async with http_client(server.url, developer.plain_key, **{"X-Request-ID": "mcp-call-1"}) as client:
                await client.call_tool("echo", {"text": "hi"})
            async with http_client(server.url, access_token, **{"X-Request-ID": "mcp-oauth-1"}) as client:
                await client.list_tools()
            async with http_client(server.url + "/key", developer.plain_key, **{"X-Request-ID": "mcp-key-1"}) as client:
                await client.list_tools()

        anyio.run(scenario)
        metrics = httpx2.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
        log = server.log()

    assert given.headers["X-Request-ID"] == "trace-abc.123"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])  # not echoed: a new one
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["logger"] == "hotcross.request"]
    first = next(line for line in requests if line["request_id"] == "trace-abc.123")
    assert (first["method"], first["path"], first["status"]) == ("GET", "/healthz", 200)
    mcp = [line for line in requests if line["request_id"] == "mcp-call-1"]
    assert mcp and all(line["path"] == "/mcp" for line in mcp)
    assert any(line.get("developer_id") == str(developer.id) for line in mcp)
    with_token = [line for line in requests if line["request_id"] == "mcp-oauth-1"]  # the transport notes it too
    assert with_token and all(line["path"] == "/mcp" for line in with_token)
    assert any(line.get("developer_id") == str(developer.id) for line in with_token)
    key_only = [line for line in requests if line["request_id"] == "mcp-key-1"]
    assert key_only and all(line["path"] == "/mcp/key" for line in key_only)
    assert any(line.get("developer_id") == str(developer.id) for line in key_only)
    assert developer.plain_key not in log and TOKEN not in log and access_token not in log
    assert sample(metrics, "hotcross_tool_calls_total", tool="echo", outcome="ok") == 1
    assert sample(metrics, "hotcross_metering_buffered_events") == 0


@pytest.mark.django_db
def test_webhook_deliveries_are_counted_by_outcome(client, settings):
    settings.HOTCROSS_METRICS_TOKEN = TOKEN

    def refused() -> float:
        text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
        return sample(text, "hotcross_webhook_events_total", type="unknown", outcome="refused")

    before = refused()
    response = client.post(
        "/stripe/webhook/00000000-0000-0000-0000-000000000000/", data="{}", content_type="application/json"
    )
    assert response.status_code == 400  # no Stripe-Signature
    assert refused() == before + 1


def test_request_ids_made_here_are_unique_in_a_process_and_across_a_fork():
    """An id the server makes: 32 hex digits, never the same twice, and a forked worker does not repeat its parent's
    (each process draws its own random half)."""
    from infra import request_log

    made = [request_log._new_request_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in made)

    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the forked worker: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(request_log._new_request_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        in_child = pipe.read().split()
    os.waitpid(child, 0)
    in_parent = [request_log._new_request_id() for _ in range(100)]
    assert len(in_child) == 100
    assert not set(in_child) & set(in_parent + made)
    assert in_child[0][:16] != in_parent[0][:16]
