"""What a hostile client can make the server log: one line per refused request, never a traceback, never a credential
(whoever writes the line), and with LOG_FORMAT=json only JSON objects."""

from __future__ import annotations

import json

import httpx2
import pytest

from tests.support.mcp import log_mark, log_since, server_env
from tests.support.servers import uvicorn

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_disallowed_host_is_logged_as_one_line_without_a_traceback(mcp_http):
    mark = log_mark(mcp_http)  # the session's server: what it logs from here on
    for path in ("/healthz", "/admin/login/", "/stripe/webhook/00000000-0000-0000-0000-000000000000/"):
        response = httpx2.get(mcp_http.base + path, headers={"Host": "evil.example"}, timeout=10)
        assert response.status_code == 400
    log = log_since(mcp_http, mark)
    assert "Traceback" not in log
    refused = [line for line in log.splitlines() if "django.security.DisallowedHost" in line]
    assert len(refused) == 3
    assert all("Invalid HTTP_HOST header: 'evil.example'" in line for line in refused)


# Credentials a client may put where a log could see them: in the query string (refused, or of a page that does not
# exist) and in the path. uvicorn's access log writes query strings in full; Django's `django.request` writes paths.
KEY = "hc_live_" + "Q7" * 20
SECRETS = {
    "api_key": KEY,
    "code": "c0de-secret-4711",
    "access_token": "acc3ss-secret-4711",
    "refresh_token": "refr3sh-secret-4711",
    "token": "t0ken-secret-4711",
    "key": "k3y-secret-4711",
    "client_secret": "cl1ent-secret-4711",
}


def send_secrets(base: str) -> list[int]:
    query = "&".join(f"{name}={value}" for name, value in SECRETS.items())
    statuses = [
        httpx2.post(f"{base}/mcp?{query}", json={}, timeout=10).status_code,  # refused: no key in the header
        httpx2.get(f"{base}/no-such-page/?{query}", timeout=10).status_code,  # 404: django.request logs it
        httpx2.get(f"{base}/no-such-page/{KEY}/", timeout=10).status_code,  # a key in the path
        httpx2.get(f"{base}/oauth/authorize/?{query}", timeout=10).status_code,
        httpx2.get(f"{base}/healthz?api_key={KEY}", timeout=10).status_code,
    ]
    return statuses


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_no_key_token_or_code_reaches_any_log_line_and_json_logs_are_json(tmp_path, log_format):
    """uvicorn's access log on, at INFO, DEBUG off: whoever writes a line (uvicorn.access, django.request, the request
    log), it holds no credential; with LOG_FORMAT=json every line is one JSON object (Django's 404 lines too)."""
    env = server_env(LOG_FORMAT=log_format, LOG_LEVEL="INFO")
    with uvicorn(tmp_path, env, args=["--access-log", "--log-level", "info"]) as server:
        statuses = send_secrets(server.base)
        server.stop()
        log = server.log()

    assert statuses[0] == 401 and statuses[1] == 404 and statuses[2] == 404
    assert "Traceback" not in log and "Logging error" not in log
    for value in (*SECRETS.values(), KEY[:20]):
        assert value not in log, f"{value!r} was logged"
    lines = [line for line in log.splitlines() if line.strip()]
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # every line
        assert all(isinstance(record, dict) for record in records)
        loggers = {record["logger"] for record in records}
        assert {"uvicorn.access", "django.request", "hotcross.request"} <= loggers
        access = [record["message"] for record in records if record["logger"] == "uvicorn.access"]
    else:
        access = [line for line in lines if "uvicorn.access" in line]
    # The lines are still there, with the values redacted.
    assert any("POST /mcp?api_key=[redacted]&code=[redacted]" in line for line in access), access
    assert any("/no-such-page/[redacted]/" in line for line in access)
    assert any("Not Found: /no-such-page/[redacted]/" in line for line in lines)
