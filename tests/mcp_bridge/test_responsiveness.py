"""Slow tools hold their own threads: the event loop, and the key check and metering of every other request, stay free.

Tools and the bridge's bookkeeping (key checks, usage events) run on separate thread pools (`infra.db`). Here
each pool has two threads and two slow sync tools fill the tool pool; a call of an async tool must still be
answered (authenticated and metered) long before they finish.

No guessed head start and no tool sleeping out a fixed time: each slow call says when it holds its thread (a file),
the probe is sent once both do, and the slow calls are released once the probe is answered (or after `SLOW` seconds,
which only a probe queued behind them would wait for).
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

SLOW = 30.0  # seconds each slow call holds a tool thread at most (released as soon as the probe is answered)
PROBE_WITHIN = 2.5  # seconds the probe may take while the slow calls hold every tool thread


def test_a_call_is_answered_while_slow_tools_fill_every_tool_thread(tmp_path):
    developer = DeveloperFactory()
    finished: list[tuple[str, float]] = []
    holding = [tmp_path / "slow-1.holding", tmp_path / "slow-2.holding"]
    release = tmp_path / "release"

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

                async with anyio.create_task_group() as group:
                    for n, client in enumerate((first, second)):
                        arguments = {"seconds": SLOW, "started": str(holding[n]), "release": str(release)}
                        group.start_soon(call, f"slow {n + 1}", client, "slow", arguments)
                    with anyio.fail_after(60):  # both slow calls hold their tool threads: the pool's two
                        while not all(path.exists() for path in holding):
                            await anyio.sleep(0.02)
                    sent = time.monotonic()
                    try:
                        await call("probe", probe, "caller_async", {})
                    finally:
                        release.touch()
                return sent

        sent = anyio.run(scenario)
        assert server.alive()

    order = [name for name, _ in finished]
    assert order[0] == "probe", finished  # not queued behind the slow calls for its key check or its usage event
    probe_latency = finished[0][1] - sent
    assert probe_latency < PROBE_WITHIN, probe_latency
    usage_written(3)
    assert Counter(UsageEvent.objects.values_list("tool_name", flat=True)) == {"slow": 2, "caller_async": 1}
