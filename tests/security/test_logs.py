"""What a hostile client can make the server log: one line per refused request, never a traceback."""

from __future__ import annotations

import httpx2
import pytest

from tests.support.mcp import log_mark, log_since

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
