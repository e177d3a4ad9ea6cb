"""An HTTP upstream can trust who the gateway says calls: every forwarded request carries `X-Hotcross-Caller`, a JWT
signed with the key published at `/.well-known/jwks.json`, which `disk_tools` (HTTP mode) verifies exactly as
docs/gateway.md shows an upstream author (PyJWT's `PyJWKClient` on the bridge's key set, audience and issuer
checked) and refuses without. And one HTTP upstream per organization, from a URL template."""

from __future__ import annotations

import json
import time

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp_types import PromptReference

from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory
from tests.gateway.test_upstream_faults import calls, start_on
from tests.support.mcp import http_client, run_uvicorn
from tests.support.servers import RunningServer, free_port
from tests.support.upstreams import HEADERS, gateway_env

pytestmark = pytest.mark.django_db(transaction=True)

ISSUER = "https://hotcross.test"


def verifying_upstream(tmp_path, port: int, bridge: RunningServer) -> RunningServer:
    """disk_tools over HTTP on `port`, verifying every caller's request against the bridge's published keys."""
    env = {
        "HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
        "HOTCROSS_JWKS_URL": f"{bridge.base}/.well-known/jwks.json",
        "HOTCROSS_ISSUER": ISSUER,
    }
    (tmp_path / "home").mkdir(exist_ok=True)
    return start_on(port, tmp_path, env)


def served(bridge: RunningServer, key: str, name: str, arguments: dict) -> dict:
    """A tools/call through the bridge, tried again while the bridge connects to the upstream started after it."""
    deadline = time.monotonic() + 20
    while True:
        answer = anyio.run(
            calls,
            bridge.url,
            key,
            [{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}],
        )[0]
        if "result" in answer or time.monotonic() > deadline:
            return answer
        assert answer["error"]["data"]["code"] == "upstream_unavailable", answer
        time.sleep(0.2)


def callers(tmp_path) -> list[dict]:
    path = tmp_path / "home" / "callers.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_forwarded_request_carries_a_verifiable_caller_assertion(tmp_path):
    plan = PlanFactory(code="team")
    developer = DeveloperFactory(organization=OrganizationFactory(plan=plan))
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    env = gateway_env(
        url,
        HOTCROSS_PUBLIC_URL=ISSUER,
        HOTCROSS_MCP_UPSTREAM_ASSERTION_KEY=str(tmp_path / "assertion-key.pem"),
    )
    with run_uvicorn(tmp_path, **env) as bridge:
        upstream = verifying_upstream(tmp_path, port, bridge)
        try:
            written = served(bridge, developer.plain_key, "write", {"text": "signed"})

            async def others():
                async with http_client(bridge.url, developer.plain_key) as client:
                    prompt = await client.get_prompt("brief", {"topic": "builds"})
                    notes = await client.read_resource("notes://all")
                    ref = PromptReference(type="ref/prompt", name="brief")
                    completed = await client.complete(ref, {"name": "topic", "value": "bu"})
                    return prompt, notes, completed

            prompt, notes, completed = anyio.run(others)
            keys = httpx2.get(f"{bridge.base}/.well-known/jwks.json", timeout=10)

            # Without the assertion, or with one signed by another key, the upstream refuses the call.
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "notes", "arguments": {}}}
            claims = {"iss": ISSUER, "aud": url, "sub": str(developer.id), "exp": int(time.time()) + 60}
            forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "x"})
            bare = httpx2.post(url, json=body, headers=HEADERS, timeout=10)
            forged_answer = httpx2.post(url, json=body, headers={**HEADERS, "X-Hotcross-Caller": forged}, timeout=10)
        finally:
            upstream.stop()

    assert written["result"]["structuredContent"] == {"notes": 1}, written
    assert prompt.messages[0].content.text == "Brief me on builds"
    assert notes.contents[0].text == "signed\n"
    seen = callers(tmp_path)
    assert completed.completion.values == ["bugs", "builds"]
    methods = ["tools/call", "prompts/get", "resources/read", "completion/complete"]
    assert [entry["method"] for entry in seen] == methods
    for entry in seen:
        assert entry["sub"] == str(developer.id)
        assert entry["hotcross/organization_id"] == str(developer.organization_id)
        assert entry["hotcross/plan"] == "team"
        assert entry["aud"] == url and entry["iss"] == ISSUER
        assert 0 < entry["exp"] - entry["iat"] <= 60
    assert keys.status_code == 200 and keys.headers["cache-control"] == "public, max-age=300"
    (published,) = keys.json()["keys"]
    assert published["kty"] == "OKP" and published["crv"] == "Ed25519" and "d" not in published
    assert bare.status_code == 401 and forged_answer.status_code == 401


def test_one_http_upstream_per_organization_from_a_url_template(tmp_path):
    ada, grace = DeveloperFactory(), DeveloperFactory()
    port = free_port()
    template = f"http://127.0.0.1:{port}/o/{{organization_id}}/mcp"
    env = gateway_env(
        template,
        HOTCROSS_MCP_UPSTREAM_SCOPE="organization",
        HOTCROSS_PUBLIC_URL=ISSUER,
        HOTCROSS_MCP_UPSTREAM_ASSERTION_KEY=str(tmp_path / "assertion-key.pem"),
    )
    with run_uvicorn(tmp_path, **env) as bridge:
        upstream = verifying_upstream(tmp_path, port, bridge)
        try:
            answers_ = [served(bridge, who.plain_key, "notes", {}) for who in (ada, grace, ada)]
            health = httpx2.get(f"{bridge.base}/healthz", timeout=10).json()["upstream"]
        finally:
            upstream.stop()
    assert all("result" in answer for answer in answers_), answers_
    seen = callers(tmp_path)
    assert [(entry["path"], entry["sub"]) for entry in seen] == [
        (f"/o/{who.organization_id}/mcp", str(who.id)) for who in (ada, grace, ada)
    ]
    assert all(entry["aud"] == f"http://127.0.0.1:{port}{entry['path']}" for entry in seen)
    assert health["scope"] == "organization" and health["processes"] == 2, health
