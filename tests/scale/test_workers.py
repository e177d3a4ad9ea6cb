"""Several workers (`uvicorn --workers 2`, as README's production command): every worker's metering is written at a
graceful stop, /metrics sums the workers, a revocation reaches every worker within a second; Django's cache on Redis
with REDIS_URL."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from django.db.models import Sum

from accounts import services
from accounts.models import UsageEvent, UsageRollup
from tests.factories import DeveloperFactory
from tests.support.mcp import http_client, run_uvicorn, server_env
from tests.support.metrics import TOKEN, sample
from tests.support.servers import ROOT, RunningServer

pytestmark = pytest.mark.django_db(transaction=True)

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@contextlib.contextmanager
def uvicorn_workers(tmp_path: Path, workers: int, **env: str) -> Iterator[RunningServer]:
    """`uvicorn hotcross.asgi:application --workers N` (tests.support), each worker with the same multiprocess metrics
    folder; stopped by SIGTERM (graceful) at the end unless the test stopped it."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    with run_uvicorn(
        tmp_path, workers=workers, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), HOTCROSS_METRICS_TOKEN=TOKEN, **env
    ) as server:
        yield server


def test_every_worker_writes_its_usage_at_a_graceful_stop_and_metrics_sum_the_workers(tmp_path):
    developers = DeveloperFactory.create_batch(4)
    # A 5-second flush interval: what is answered in the last seconds is still buffered when the stop comes.
    with uvicorn_workers(tmp_path, 2, HOTCROSS_MCP_METERING_FLUSH_SECONDS="5") as server:

        async def one_client(developer, calls: int) -> None:
            async with http_client(server.url, developer.plain_key) as client:
                for n in range(calls):
                    await client.call_tool("echo", {"text": str(n)})

        async def scenario() -> None:
            async with anyio.create_task_group() as group:
                for round_ in range(5):  # new connections: both workers get clients
                    for developer in developers:
                        group.start_soon(one_client, developer, 3 + round_ % 2)

        anyio.run(scenario)
        calls = sum((3 + round_ % 2) * len(developers) for round_ in range(5))
        metrics = httpx2.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
        assert sample(metrics, "hotcross_tool_calls_total", tool="echo", outcome="ok") == calls
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0, server.log()

    assert UsageEvent.objects.count() == calls
    assert UsageRollup.objects.aggregate(n=Sum("calls"))["n"] == calls
    assert "spooled" not in server.log()


def test_a_revocation_reaches_both_workers_within_a_second(tmp_path):
    developer = DeveloperFactory()
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {**ACCEPT, "Authorization": f"Bearer {developer.plain_key}"}
    with uvicorn_workers(tmp_path, 2) as server, httpx2.Client(timeout=10) as http:

        def status() -> int:
            # A new connection each time: the kernel spreads them over both workers.
            return http.post(server.url, json=body, headers={**headers, "Connection": "close"}).status_code

        assert {status() for _ in range(40)} == {200}  # both workers remember the key as working
        services.revoke_key(developer=developer)
        revoked_at = time.monotonic()
        last_ok = revoked_at
        while time.monotonic() - revoked_at < 2.0:
            sent = time.monotonic()
            if status() == 200:
                last_ok = sent  # when the accepted request left (its answer takes a round trip more)
        assert last_ok - revoked_at <= 1.05, f"a worker still accepted the key {last_ok - revoked_at:.2f} s later"
        assert {status() for _ in range(20)} == {403}


def test_with_redis_url_the_cache_is_shared_through_redis(redis_service):
    code = (
        "from django.core.cache import caches; cache = caches['default']; cache.set('hotcross-test', 'shared', 30); "
        "import json; print(json.dumps([type(cache).__name__, cache.get('hotcross-test')]))"
    )

    def shell(**env: str) -> list:
        out = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            env=server_env(**env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert shell(REDIS_URL=redis_service.url) == ["RedisCache", "shared"]
    assert shell() == ["LocMemCache", "shared"]

    client = redis_service.client()
    try:
        assert any(b"hotcross-test" in key for key in client.keys("hotcross*"))  # in Redis, where every worker sees it
        client.delete(*client.keys("hotcross*"))
    finally:
        client.close()
