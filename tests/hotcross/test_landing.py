"""`/`: the landing page the admin's "View site" leads to."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_the_landing_page_names_the_server_the_mcp_url_the_admin_and_health(settings):
    settings.HOTCROSS_PUBLIC_URL = "https://backoffice.example.com"
    response = Client().get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Hotcross back office" in html
    assert "https://backoffice.example.com/mcp" in html
    assert 'href="/admin/"' in html and 'href="/healthz"' in html
    # OAuth clients need only /mcp; header-only clients have the key-only URL; developers their own page.
    assert "https://backoffice.example.com/mcp/key" in html and "X-API-Key" in html
    assert 'href="/account/"' in html
    # Issue 31: `word-break: break-all` wrapped "X-API-Key" mid-word. Headers stay on one line; long URLs may wrap.
    assert "break-all" not in html
    assert '<code class="header">X-API-Key: hc_live_…</code>' in html and "code.header { white-space: nowrap; }" in html


@pytest.mark.django_db
def test_the_admin_s_view_site_link_leads_to_it(admin_client):
    index = admin_client.get("/admin/")
    assert b'href="/"' in index.content  # "View site"
    assert Client().get("/").status_code == 200


def test_only_reading_is_allowed():
    assert Client().post("/").status_code == 405
