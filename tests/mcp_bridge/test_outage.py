"""The database going away mid-session and coming back: a clear error meanwhile, no crash, no restart needed.

The shared PostgreSQL keeps running: the servers reach it through a TCP proxy that the test cuts (connections
refused) or turns into a black hole (connections open, nothing answered: packets dropped without an RST), then
restores. Either way every request is answered within seconds (HTTP 503 / MCP -32002), not after TCP gives up.
"""

from __future__ import annotations

import time

import anyio
import httpx2
import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.support.mcp import (
    KEY_MEMORY_SECONDS,
    database_url,
    http_client,
    mcp_error,
    run_uvicorn,
    stdio_session,
    structured,
    usage_written,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

RECOVERY = 45  # the pool retries connecting with a backoff of a few seconds
# Short bounds, so that a black hole is noticed quickly here (the defaults are 3, 5 and 5 s; libpq's connect timeout
# is 2 s at the least), and key checks remembered for KEY_MEMORY_SECONDS rather than a second.
SETTINGS = {
    "DATABASE_CONNECT_TIMEOUT": "2",
    "DATABASE_QUERY_TIMEOUT": "1",
    "DATABASE_POOL_TIMEOUT": "1",
    "HOTCROSS_KEY_CACHE_SECONDS": str(KEY_MEMORY_SECONDS),
}
KEY_MEMORY = 2 * KEY_MEMORY_SECONDS  # the key check may be remembered that long; wait past it
ANSWER_WITHIN = 7.0  # seconds: each request during the outage is answered by then


def go_down(proxy, how: str) -> None:
    proxy.cut() if how == "refused" else proxy.black_hole()


async def timed(call):
    started = time.monotonic()
    result = await call()
    return result, time.monotonic() - started


async def refused_while_down(call) -> Exception:
    started = time.monotonic()
    try:
        await call()
    except Exception as exc:
        took = time.monotonic() - started
        assert took < ANSWER_WITHIN, f"the refusal took {took:.1f} s"
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
        await anyio.sleep(0.05)


def assert_unavailable(error) -> None:
    assert error.code == -32002
    assert error.data["code"] == "service_unavailable"
    assert "cannot reach its database" in error.message


@pytest.mark.parametrize("how", ["refused", "black_hole"])
def test_http_outage_gives_a_clear_error_and_recovers_without_a_restart(tmp_path, db_proxy, how):
    developer = DeveloperFactory()
    through_proxy = database_url(host="127.0.0.1", port=db_proxy.port)

    with run_uvicorn(tmp_path, DATABASE_URL=through_proxy, **SETTINGS) as server:

        def get(path: str, **kwargs) -> httpx2.Response:
            return httpx2.get(server.base + path, timeout=30, **kwargs)

        def post_tools_list() -> httpx2.Response:
            return httpx2.post(
                server.url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": f"Bearer {developer.plain_key}"},
                timeout=30,
            )

        async def scenario():
            async with http_client(server.url, developer.plain_key) as client:

                async def whoami():
                    return structured(await client.call_tool("whoami", {}))

                before = await whoami()
                healthy = await anyio.to_thread.run_sync(get, "/healthz")
                go_down(db_proxy, how)
                await anyio.sleep(KEY_MEMORY)
                during = [await refused_while_down(whoami) for _ in range(2)]
                raw, raw_took = await timed(lambda: anyio.to_thread.run_sync(post_tools_list))
                health, health_took = await timed(lambda: anyio.to_thread.run_sync(get, "/healthz"))
                db_proxy.restore()
                after = await until_it_works(whoami)
                return before, healthy, during, (raw, raw_took), (health, health_took), after

        before, healthy, during, (raw, raw_took), (health, health_took), after = anyio.run(scenario)
        assert server.alive()
        # Calls answered with an outage error were not served, so they are not metered. (Waited for before the stop:
        # after a black hole the first write finds its connection dead only at DATABASE_QUERY_TIMEOUT, and a stop
        # sooner than that would spool the event rather than write it.)
        usage_written(2)

    assert healthy.status_code == 200
    assert before == after
    for error in during:
        assert_unavailable(error)
    assert raw.status_code == 503
    assert raw_took < ANSWER_WITHIN
    assert raw.headers["retry-after"] == "5"
    assert raw.json()["error"]["data"]["code"] == "service_unavailable"
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "database": "down"}
    assert health_took < ANSWER_WITHIN
    assert "Traceback" not in server.log()
    assert UsageEvent.objects.filter(developer=developer, ok=True).count() >= 2


@pytest.mark.parametrize("how", ["refused", "black_hole"])
def test_stdio_outage_gives_a_clear_error_and_the_session_recovers(tmp_path, db_proxy, how):
    developer = DeveloperFactory()
    through_proxy = database_url(host="127.0.0.1", port=db_proxy.port)

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, DATABASE_URL=through_proxy, **SETTINGS) as client:

                async def whoami():
                    return structured(await client.call_tool("whoami", {}))

                before = await whoami()
                go_down(db_proxy, how)
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
