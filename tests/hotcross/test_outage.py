"""A black-holed database (connections open, nothing answered) while a real server runs: every Django endpoint
answers 503 with Retry-After within the query bound, never 500 and never after TCP gives up; once the database is
back, /healthz says so within a few seconds.

The servers reach the shared PostgreSQL through the suite's TCP proxy (`db_proxy`), which the test turns into a black
hole and restores. The bridge's own outage answers (/mcp, stdio) are tests/mcp_bridge/test_outage.py's.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx2
import pytest

from tests.factories import DeveloperFactory
from tests.support.mcp import database_url, run_uvicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

QUERY_BOUND = 1.0
# Short bounds, so that the black hole is noticed quickly here (defaults: 3, 5 and 5 s; libpq's connect timeout is 2 s
# at the least). The pool timeout is the query bound: a request that finds no pooled connection waits no longer.
SETTINGS = {
    "DATABASE_CONNECT_TIMEOUT": "2",
    "DATABASE_QUERY_TIMEOUT": str(QUERY_BOUND),
    "DATABASE_POOL_TIMEOUT": str(QUERY_BOUND),
    "SECURE_SSL_REDIRECT": "false",
    "HOTCROSS_KEY_CACHE_SECONDS": "0",
}
ANSWER_WITHIN = QUERY_BOUND + 1.0  # the bound, and a margin for a busy two-core machine
RECOVERY_WITHIN = 6.0  # the connect timeout (an attempt begun in the black hole), a pool retry, and a margin

UNKNOWN_KEY = "hc_live_" + "Zq" * 20
SESSION = {"Cookie": "sessionid=" + "s" * 32}  # a session to look up: the admin and /account/ read the database
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def requests(base: str) -> dict[str, httpx2.Request]:
    """One request per door of the Django side, each of which needs the database to answer."""
    bearer = {"Authorization": f"Bearer {UNKNOWN_KEY}"}
    register = {
        "client_name": "outage",
        "redirect_uris": ["http://127.0.0.1:9/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return {
        "healthz": httpx2.Request("GET", f"{base}/healthz"),
        "keys/verify": httpx2.Request("POST", f"{base}/api/v1/keys/verify", headers=bearer, json={}),
        "usage": httpx2.Request("POST", f"{base}/api/v1/usage", headers=bearer, json={"events": []}),
        "oauth/register": httpx2.Request("POST", f"{base}/oauth/register/", json=register),
        "oauth/token": httpx2.Request(
            "POST",
            f"{base}/oauth/token/",
            headers=form,
            content="grant_type=refresh_token&refresh_token=r3fresh&client_id=nobody",
        ),
        "oauth/revoke": httpx2.Request(
            "POST", f"{base}/oauth/revoke/", headers=form, content="token=t0ken&client_id=nobody"
        ),
        "stripe webhook": httpx2.Request(
            "POST",
            f"{base}/stripe/webhook/{uuid.uuid4()}/",
            headers={"Stripe-Signature": "t=1,v1=00"},
            content=json.dumps({"id": "evt_1", "type": "customer.updated"}),
        ),
        "admin": httpx2.Request("GET", f"{base}/admin/", headers={**SESSION, **HTML}),
        "account": httpx2.Request("GET", f"{base}/account/", headers={**SESSION, **HTML}),
    }


def timed(client: httpx2.Client, request: httpx2.Request) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = client.send(request)
    return response, time.monotonic() - started


def test_a_black_holed_database_is_a_prompt_503_everywhere_and_recovery_is_prompt(tmp_path, db_proxy):
    developer = DeveloperFactory()
    through_proxy = database_url(host="127.0.0.1", port=db_proxy.port)

    with run_uvicorn(tmp_path, DATABASE_URL=through_proxy, **SETTINGS) as server, httpx2.Client(timeout=60) as client:
        # Before: every door answers without a server error (and the pool holds connections the black hole will eat).
        before = {name: client.send(request).status_code for name, request in requests(server.base).items()}
        verify = {"Authorization": f"Bearer {developer.plain_key}"}
        assert client.post(f"{server.base}/api/v1/keys/verify", headers=verify, json={}).status_code == 200

        db_proxy.black_hole()
        during = {name: timed(client, request) for name, request in requests(server.base).items()}
        again = {name: timed(client, request) for name, request in requests(server.base).items()}

        db_proxy.restore()
        started = time.monotonic()
        while client.get(f"{server.base}/healthz").status_code != 200:
            assert time.monotonic() - started < 60, "the database is back, /healthz still says it is down"
            time.sleep(0.05)
        recovery = time.monotonic() - started
        after = client.post(f"{server.base}/api/v1/keys/verify", headers=verify, json={})
        log = server.log()

    assert all(status < 500 for status in before.values()), before
    assert before["healthz"] == 200
    measured = {name: f"{took:.2f} s" for name, (_, took) in during.items()}
    print(f"answers during the black hole: {measured}; /healthz back after {recovery:.2f} s")
    for name, (response, took) in [*during.items(), *((f"{n} (again)", r) for n, r in again.items())]:
        assert response.status_code == 503, (name, response.status_code, response.text[:300])
        assert response.headers["Retry-After"] == "5", name
        assert took < ANSWER_WITHIN, f"{name} answered after {took:.1f} s ({measured})"
    # JSON for API clients, a page for browsers.
    assert during["keys/verify"][0].json()["error"]["code"] == "service_unavailable"
    assert during["oauth/token"][0].json()["error"]["code"] == "service_unavailable"
    assert during["healthz"][0].json() == {"status": "unavailable", "database": "down"}
    assert "cannot reach its database" in during["admin"][0].text
    assert during["admin"][0].headers["Content-Type"].startswith("text/html")

    assert recovery < RECOVERY_WITHIN, f"/healthz said the database was back after {recovery:.1f} s"
    assert after.status_code == 200
    assert "Traceback" not in log
