"""The database going away mid-session and coming back: a clear error meanwhile, no crash, no restart needed.

The shared PostgreSQL keeps running: the servers reach it through a TCP proxy that the test cuts and restores.
"""

from __future__ import annotations

import time

import anyio
import httpx2
import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.mcp_bridge.conftest import (
    database_url,
    http_client,
    mcp_error,
    run_uvicorn,
    stdio_session,
    structured,
    usage_written,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

KEY_MEMORY = 1.2  # the key check may be remembered for a second; wait past it
RECOVERY = 45  # the pool retries connecting with a backoff of a few seconds


async def refused_while_down(call) -> Exception:
    try:
        await call()
    except Exception as exc:
        return mcp_error(exc)
    raise AssertionError("a call succeeded while the database was unreachable")


async def until_it_works(call):
    deadline = time.monotonic() + RECOVERY
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise
        await anyio.sleep(0.5)


def assert_unavailable(error) -> None:
    assert error.code == -32002
    assert error.data["code"] == "service_unavailable"
    assert "cannot reach its database" in error.message


def test_http_outage_gives_a_clear_error_and_recovers_without_a_restart(tmp_path, db_proxy):
    developer = DeveloperFactory()
    through_proxy = database_url(host="127.0.0.1", port=db_proxy.port)

    with run_uvicorn(tmp_path, DATABASE_URL=through_proxy, DATABASE_POOL_TIMEOUT="2") as server:

        async def scenario():
            async with http_client(server.url, developer.plain_key) as client:

                async def whoami():
                    return structured(await client.call_tool("whoami", {}))

                before = await whoami()
                db_proxy.cut()
                await anyio.sleep(KEY_MEMORY)
                during = [await refused_while_down(whoami) for _ in range(2)]
                raw = await anyio.to_thread.run_sync(
                    lambda: httpx2.post(
                        server.url,
                        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                        headers={"Authorization": f"Bearer {developer.plain_key}"},
                        timeout=30,
                    )
                )
                db_proxy.restore()
                after = await until_it_works(whoami)
                return before, during, raw, after

        before, during, raw, after = anyio.run(scenario)
        assert server.alive()

    assert before == after
    for error in during:
        assert_unavailable(error)
    assert raw.status_code == 503
    assert raw.headers["retry-after"] == "5"
    assert raw.json()["error"]["data"]["code"] == "service_unavailable"
    assert "Traceback" not in server.log()
    # Calls answered with an outage error were not served, so they are not metered.
    usage_written(2)
    assert UsageEvent.objects.filter(developer=developer, ok=True).count() >= 2


def test_stdio_outage_gives_a_clear_error_and_the_session_recovers(tmp_path, db_proxy):
    developer = DeveloperFactory()
    through_proxy = database_url(host="127.0.0.1", port=db_proxy.port)

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(
                developer.plain_key, errlog, DATABASE_URL=through_proxy, DATABASE_POOL_TIMEOUT="2"
            ) as client:

                async def whoami():
                    return structured(await client.call_tool("whoami", {}))

                before = await whoami()
                db_proxy.cut()
                await anyio.sleep(KEY_MEMORY)
                during = await refused_while_down(whoami)
                listing = await refused_while_down(client.list_tools)
                db_proxy.restore()
                after = await until_it_works(whoami)
                return before, during, listing, after

    before, during, listing, after = anyio.run(scenario)
    assert before == after
    assert_unavailable(during)
    assert_unavailable(listing)
    assert "Traceback" not in (tmp_path / "stderr").read_text()
