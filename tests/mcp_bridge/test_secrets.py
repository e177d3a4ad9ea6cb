"""No plain key reaches a log, at any log level, on either transport, whatever happens to the key."""

from __future__ import annotations

import subprocess
import sys

import anyio
import httpx2
import pytest

from accounts import keys, services
from tests.factories import DeveloperFactory
from tests.support.mcp import (
    KEY_MEMORY_SECONDS,
    db,
    http_client,
    refused_within,
    run_uvicorn,
    server_env,
    stdio_session,
)
from tests.support.servers import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


def assert_no_key(log: str, *plain_keys: str) -> None:
    for key in plain_keys:
        assert key not in log
        assert key[len(keys.KEY_PREFIX) :] not in log  # nor its secret part, however it might be quoted


def test_http_logs_hold_no_key(tmp_path):
    good = DeveloperFactory()
    revoked = DeveloperFactory()
    services.revoke_key(developer=revoked)
    unknown = keys.generate_key()

    with run_uvicorn(tmp_path, LOG_LEVEL="DEBUG") as server:

        async def scenario():
            async with http_client(server.url, good.plain_key) as client:
                await client.call_tool("whoami", {})
                await client.call_tool("fail", {"reason": "x"})

        anyio.run(scenario)
        statuses = [
            httpx2.post(
                server.url,
                json=TOOLS_LIST,
                headers={"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"},
                timeout=30,
            ).status_code
            for key in (revoked.plain_key, unknown)
        ]
        log = server.log()

    assert statuses == [401, 401]  # a revoked key no longer works: 401 invalid_token, like an unknown one
    assert "mcp http request refused code=key_revoked" in log  # INFO and DEBUG lines were written
    assert_no_key(log, good.plain_key, revoked.plain_key, unknown)


def test_stdio_logs_hold_no_key(tmp_path):
    developer = DeveloperFactory()
    errlog_path = tmp_path / "stderr"

    async def scenario():
        with open(errlog_path, "w") as errlog:
            # Key checks remembered for KEY_MEMORY_SECONDS: the revocation is refused that soon, not after a second.
            memory = {"HOTCROSS_KEY_CACHE_SECONDS": str(KEY_MEMORY_SECONDS)}
            async with stdio_session(developer.plain_key, errlog, LOG_LEVEL="DEBUG", **memory) as client:
                await client.call_tool("whoami", {})
                await db(services.revoke_key, developer=developer)
                refused, _ = await refused_within(lambda: client.call_tool("whoami", {}), 3)
                return refused

    assert anyio.run(scenario).data["code"] == "key_revoked"
    at_start = subprocess.run(
        [sys.executable, "manage.py", "mcp_server"],
        env=server_env(HOTCROSS_API_KEY=developer.plain_key, LOG_LEVEL="DEBUG"),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = errlog_path.read_text()
    assert "mcp stdio request refused code=key_revoked" in log
    assert at_start.returncode == 2
    assert_no_key(log + at_start.stdout + at_start.stderr, developer.plain_key)
