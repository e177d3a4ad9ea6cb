"""Several workers (`uvicorn --workers 2`, the production command of docs/operations.md): every worker's metering is
written at a graceful stop, /metrics sums the workers, a revocation reaches every worker within a second; Django's
cache on Redis with REDIS_URL."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from django.db.models import Sum
from django.utils import timezone

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


# The workers' key-check memory (HOTCROSS_KEY_CACHE_SECONDS, at most and by default 1 s): the window in which a worker
# may still accept a key revoked elsewhere, short here so that the revocation test does not wait seconds.
KEY_MEMORY_SECONDS = 0.2
# One environment for both tests of the shared server. A 5-second flush interval: what is answered in the last seconds
# is still buffered when the stop comes (the revocation test makes no tool call: it has nothing to flush).
WORKERS_ENV = {"HOTCROSS_MCP_METERING_FLUSH_SECONDS": "5", "HOTCROSS_KEY_CACHE_SECONDS": str(KEY_MEMORY_SECONDS)}


@pytest.fixture(scope="module")
def two_workers(django_db_setup, tmp_path_factory) -> Iterator[Callable[[], RunningServer]]:
    """`running()`: this module's `uvicorn --workers 2` (`WORKERS_ENV`), started on first use, and again if a test
    stopped it (the graceful-stop test does, so it runs last here). Each test brings its own developers."""
    servers: list[RunningServer] = []
    with contextlib.ExitStack() as stack:

        def running() -> RunningServer:
            if not servers or not servers[-1].alive():
                folder = tmp_path_factory.mktemp("workers")
                servers.append(stack.enter_context(uvicorn_workers(folder, 2, **WORKERS_ENV)))
            return servers[-1]

        yield running


def test_a_revocation_reaches_both_workers_within_a_second(two_workers):
    """Within the workers' key-check memory (a second at most; `KEY_MEMORY_SECONDS` here): each worker read the key
    before the revocation, so what it remembers expires at most that long after it."""
    # Used a moment ago: its key checks note no last use, so no flush is started here (the graceful-stop test, next on
    # this server, needs its calls' events still buffered at the stop).
    developer = DeveloperFactory(api_key_last_used_at=timezone.now())
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {**ACCEPT, "Authorization": f"Bearer {developer.plain_key}"}
    memory = KEY_MEMORY_SECONDS
    server = two_workers()
    with httpx2.Client(timeout=10) as http:

        def status() -> int:
            # A new connection each time: the kernel spreads them over both workers.
            return http.post(server.url, json=body, headers={**headers, "Connection": "close"}).status_code

        assert {status() for _ in range(40)} == {200}  # both workers remember the key as working
        services.revoke_key(developer=developer)
        revoked_at = time.monotonic()
        last_ok = revoked_at
        while time.monotonic() - revoked_at < 2 * memory + 0.2:  # well past the memory: a worker that kept it shows
            sent = time.monotonic()
            if status() == 200:
                last_ok = sent  # when the accepted request left (its answer takes a round trip more)
        assert last_ok - revoked_at <= min(1.05, memory + 0.05), (
            f"a worker still accepted the key {last_ok - revoked_at:.2f} s later"
        )
        assert {status() for _ in range(20)} == {401}  # a revoked key: 401 invalid_token (issue 26 item 14)


def test_every_worker_writes_its_usage_at_a_graceful_stop_and_metrics_sum_the_workers(two_workers):
    developers = DeveloperFactory.create_batch(4)
    # A 5-second flush interval (`WORKERS_ENV`): what is answered in the last seconds is still buffered at the stop.
    server = two_workers()

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
