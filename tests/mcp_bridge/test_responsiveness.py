"""Slow tools hold their own threads: the event loop, and the key check and metering of every other request, stay free.

Tools and the bridge's bookkeeping (key checks, usage events) run on separate thread pools (`hotcross.db`). Here
each pool has two threads and two slow sync tools fill the tool pool; a call of an async tool must still be
answered (authenticated and metered) long before they finish.
"""

from __future__ import annotations

import time
from collections import Counter

import anyio
import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.support.mcp import http_client, run_uvicorn, structured, usage_written

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = 4.0  # seconds each slow call holds a tool thread
HEAD_START = 1.5  # time given to the slow calls to reach their threads


def test_a_call_is_answered_while_slow_tools_fill_every_tool_thread(tmp_path):
    developer = DeveloperFactory()
    finished: list[tuple[str, float]] = []

    with run_uvicorn(tmp_path, HOTCROSS_MCP_DB_THREADS="2") as server:

        async def scenario():
            async with (
                http_client(server.url, developer.plain_key) as first,
                http_client(server.url, developer.plain_key) as second,
                http_client(server.url, developer.plain_key) as probe,
            ):

                async def call(name: str, client, tool: str, arguments: dict) -> None:
                    structured(await client.call_tool(tool, arguments))
                    finished.append((name, time.monotonic()))

                started = time.monotonic()
                async with anyio.create_task_group() as group:
                    group.start_soon(call, "slow 1", first, "slow", {"seconds": SLOW})
                    group.start_soon(call, "slow 2", second, "slow", {"seconds": SLOW})
                    await anyio.sleep(HEAD_START)
                    await call("probe", probe, "caller_async", {})
                return started

        started = anyio.run(scenario)
        assert server.alive()

    order = [name for name, _ in finished]
    assert order[0] == "probe", finished  # not queued behind the slow calls for its key check or its usage event
    probe_latency = finished[0][1] - started - HEAD_START
    assert probe_latency < SLOW - HEAD_START, probe_latency
    usage_written(3)
    assert Counter(UsageEvent.objects.values_list("tool_name", flat=True)) == {"slow": 2, "caller_async": 1}
