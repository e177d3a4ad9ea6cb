"""Stdio-only clients reach the hosted `/mcp` through `mcp-remote` (npm, pinned in package.json) with a header: the
MCP Inspector CLI drives `mcp-remote` over stdio, which forwards to uvicorn over streamable HTTP."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.factories import DeveloperFactory
from tests.support.mcp import INSPECTOR, inspector_available
from tests.support.servers import ROOT

MCP_REMOTE = ROOT / "node_modules" / ".bin" / "mcp-remote"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not inspector_available(), reason="MCP Inspector not installed (run `npm ci`)"),
]


def through_mcp_remote(url: str, key: str, *args: str) -> subprocess.CompletedProcess:
    """The Inspector starts `mcp-remote URL --header X-API-Key:<key>` as its stdio server. The Inspector would take a
    `--header` in its command line as its own option, so a shell line starts mcp-remote, with the key in the
    environment (as in a client's config: `"env": {"HOTCROSS_API_KEY": …}`)."""
    line = f'exec "{MCP_REMOTE}" "{url}" --header "X-API-Key:$HOTCROSS_API_KEY"'
    return subprocess.run(
        [str(INSPECTOR), "--cli", "-e", f"HOTCROSS_API_KEY={key}", "--", "sh", "-c", line, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def test_mcp_remote_with_a_header_lists_tools_and_whoami(oauth_server):
    developer = DeveloperFactory()
    url = oauth_server.base + "/mcp/key"
    listed = through_mcp_remote(url, developer.plain_key, "--method", "tools/list")
    assert listed.returncode == 0, listed.stderr + listed.stdout
    assert {"whoami", "usage"} <= {t["name"] for t in json.loads(listed.stdout)["tools"]}

    called = through_mcp_remote(url, developer.plain_key, "--method", "tools/call", "--tool-name", "whoami")
    assert called.returncode == 0, called.stderr + called.stdout
    me = json.loads(called.stdout)["structuredContent"]
    assert me["developer_id"] == str(developer.pk) and me["credential"] == "api_key"
