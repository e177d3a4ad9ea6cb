"""/healthz's body: the database, then what the apps' health checks say (`infra.health`), the upstream's in gateway
mode; none of it changes the status but the database."""

from __future__ import annotations

import pytest
from django.test import override_settings

from infra import health


@pytest.mark.django_db
def test_without_an_upstream_healthz_says_only_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b'{"status": "ok", "database": "up"}'


@pytest.mark.django_db
@override_settings(HOTCROSS_MCP_UPSTREAM="uvx hotcross-tools", HOTCROSS_MCP_UPSTREAM_SCOPE="team")
def test_a_misconfigured_upstream_is_said_without_changing_the_status(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "up", "upstream": {"state": "misconfigured"}}


@pytest.mark.django_db
@override_settings(HOTCROSS_MCP_UPSTREAM="uvx hotcross-tools")
def test_an_upstream_no_server_has_started_is_stopped(client):
    response = client.get("/healthz")
    assert response.json()["upstream"] == {"transport": "stdio", "scope": "shared", "state": "stopped"}


@pytest.mark.django_db
def test_registered_checks_answer_in_order_and_none_is_left_out(client, monkeypatch):
    monkeypatch.setattr(health, "_checks", dict(health._checks))
    health.register("cache", lambda: {"state": "up"})
    health.register("quiet", lambda: None)
    response = client.get("/healthz")
    assert list(response.json()) == ["status", "database", "cache"]
    assert response.json()["cache"] == {"state": "up"}
