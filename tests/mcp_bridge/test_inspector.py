"""The MCP Inspector CLI (npm `@modelcontextprotocol/inspector`, pinned in package.json) against both transports.

CI installs it with `npm ci` and sets CI=true, so there a missing Inspector fails instead of skipping.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.support.mcp import INSPECTOR, database_url, inspector_available, usage_written
from tests.support.servers import ROOT

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not inspector_available(), reason="MCP Inspector not installed (run `npm ci`)"),
]


def inspector(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(INSPECTOR), "--cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def over_stdio(key: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        "HOTCROSS_API_KEY": key,
        "DATABASE_URL": database_url(),
        "SECRET_KEY": "tests-only-inspector",
        "DJANGO_SETTINGS_MODULE": "hotcross.settings",
        "HOTCROSS_MCP_TOOLS": "tests.support.sample_tools",
        "LOG_LEVEL": "WARNING",
    }
    env_args = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    return inspector(*env_args, "--", sys.executable, str(ROOT / "manage.py"), "mcp_server", *args)


def over_http(url: str, key: str, *args: str) -> subprocess.CompletedProcess:
    return inspector(url, "--transport", "http", "--header", f"Authorization: Bearer {key}", *args)


def test_inspector_over_stdio_lists_tools_and_calls_one():
    developer = DeveloperFactory()

    listed = over_stdio(developer.plain_key, "--method", "tools/list")
    assert listed.returncode == 0, listed.stderr
    assert {"whoami", "usage"} <= {t["name"] for t in json.loads(listed.stdout)["tools"]}

    called = over_stdio(developer.plain_key, "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "text=hi")
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["structuredContent"]["developer_id"] == str(developer.id)
    usage_written(1)
    assert UsageEvent.objects.filter(developer=developer, tool_name="echo", ok=True).count() == 1


def test_inspector_over_stdio_with_a_bad_key_fails():
    # The server exits 2 before any MCP traffic; the Inspector keeps the server's stderr to itself and reports the
    # closed connection.
    refused = over_stdio("hc_live_" + "b" * 40, "--method", "tools/list")
    assert refused.returncode == 1
    assert "Connection closed" in refused.stderr
    assert "tools" not in refused.stdout


def test_inspector_over_http_lists_tools_and_calls_whoami(mcp_http):
    developer = DeveloperFactory()

    listed = over_http(mcp_http.url, developer.plain_key, "--method", "tools/list")
    assert listed.returncode == 0, listed.stderr
    assert {"whoami", "usage"} <= {t["name"] for t in json.loads(listed.stdout)["tools"]}

    called = over_http(mcp_http.url, developer.plain_key, "--method", "tools/call", "--tool-name", "whoami")
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["structuredContent"]["email"] == developer.email


def test_inspector_over_http_shows_the_refusal(mcp_http):
    unknown = over_http(mcp_http.url, "hc_live_" + "c" * 40, "--method", "tools/list")
    assert unknown.returncode == 1
    assert "invalid_key: This API key is not valid." in unknown.stdout + unknown.stderr

    developer = DeveloperFactory(is_active=False)
    inactive = over_http(mcp_http.url, developer.plain_key, "--method", "tools/list")
    assert inactive.returncode == 1
    assert "developer_inactive: The developer account" in inactive.stdout + inactive.stderr
