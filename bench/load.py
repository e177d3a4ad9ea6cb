#!/usr/bin/env python
"""Load test: MCP clients over streamable HTTP against `uvicorn --workers N` on PostgreSQL.

    .venv/bin/python bench/load.py [--clients 50] [--seconds 60] [--workers 1,2]

Creates a scratch database (`hotcross_bench_scale_load`, dropped at the end unless --keep) with one organization and
`--clients` developers, each with an own key. For each worker count it starts `uvicorn hotcross.asgi:application
--workers N` (multiprocess metrics on), and `--clients` clients, each on its own connection with its own key, call a
trivial tool (`ping`, bench/mcp_overhead.py's) one call after the other for `--seconds` seconds (bounded: no call
starts after that). Then the server is stopped gracefully (SIGTERM: every worker writes its buffered usage events) and
it checks that raw usage events == calls answered == the rollups' sum.

Prints per worker count: calls answered, errors (target 0), throughput, p50/p99 latency, and the check; then the
throughput of 2 workers ÷ 1 worker. The clients run in this process (asyncio), on the same machine as the server:
on a small machine they take a share of the CPU, which the ratio shows. Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import ROOT, load_developers, parser, percentile, scratch_database, uvicorn

from tests.support.servers import RunningServer

SCRATCH_DB = "hotcross_bench_scale_load"
BENCH = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    arguments = parser(__doc__)
    arguments.add_argument("--clients", type=int, default=50)
    arguments.add_argument("--seconds", type=float, default=60.0)
    arguments.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    return arguments.parse_args()


def main() -> None:
    args = parse_args()
    with scratch_database(args.server, SCRATCH_DB, keep=args.keep, LOG_LEVEL="WARNING"):
        run(args)


def run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Sum
    from django.utils import timezone

    from accounts.models import UsageEvent, UsageRollup

    call_command("migrate", verbosity=0)  # every app: the revocation writes the admin history
    # One more developer than clients: its key is revoked to measure how soon every worker refuses it.
    _, developers, all_keys = load_developers(1, args.clients + 1, timezone.now())
    plain_keys, spare_developer, spare_key = all_keys[:-1], developers[-1], all_keys[-1]
    connection.close()
    results = {}
    for workers in [int(n) for n in args.workers.split(",")]:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE accounts_usageevent, accounts_usagerollup")
        connection.close()
        with _start(workers) as server:
            print(f"\n{workers} worker(s): {args.clients} clients for {args.seconds:.0f} s…", flush=True)
            try:
                answered, errors, latencies, elapsed = asyncio.run(_load(server.port, plain_keys, args.seconds))
                if workers == 2:
                    lag = asyncio.run(_revocation_lag(server.port, spare_developer, spare_key))
                    print(f"  a revocation reached every worker {lag:.2f} s after it was made", flush=True)
            finally:
                code = server.stop(signal.SIGTERM, timeout=60)
        events = UsageEvent.objects.count()
        rolled = UsageRollup.objects.aggregate(n=Sum("calls"))["n"] or 0
        connection.close()
        ordered = sorted(latencies)
        rate = answered / elapsed
        results[workers] = rate
        verdict = "OK" if events == answered == rolled else "MISMATCH"
        print(
            f"  answered {answered:,} calls, {errors} errors, {rate:,.0f} calls/s, "
            f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {percentile(ordered, 0.99) * 1000:.1f} ms\n"
            f"  after a graceful stop (exit {code}): raw events {events:,}, rollups' sum {rolled:,}, "
            f"calls answered {answered:,}: {verdict}",
            flush=True,
        )
    if 1 in results and 2 in results:
        print(f"\nthroughput 2 workers ÷ 1 worker: {results[2] / results[1]:.2f}")


async def _revocation_lag(port: int, developer, key: str) -> float:
    """Seconds from a revocation (made here, through the service) until requests on new connections, which the kernel
    spreads over the workers, are all refused: the last accepted request's start after the revocation."""
    import httpx2
    from asgiref.sync import sync_to_async

    from accounts import services

    url = f"http://127.0.0.1:{port}/mcp"
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Connection": "close",
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx2.AsyncClient(timeout=10) as http:
        for _ in range(40):  # every worker remembers the key as working
            await http.post(url, json=body, headers=headers)
        await sync_to_async(services.revoke_key)(developer=developer)
        revoked = time.monotonic()
        last_ok = revoked
        while time.monotonic() - revoked < 2.5:
            sent = time.monotonic()
            if (await http.post(url, json=body, headers=headers)).status_code == 200:
                last_ok = sent
    return last_ok - revoked


@contextlib.contextmanager
def _start(workers: int) -> Iterator[RunningServer]:
    """`uvicorn hotcross.asgi:application --workers N` (bench/common.py: the tests' launcher), multiprocess metrics
    on; stopped at the end unless stopped before."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)]),
        "HOTCROSS_MCP_TOOLS": "mcp_overhead",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="hotcross-metrics-"),
        "LOG_LEVEL": "WARNING",
    }
    with uvicorn("hotcross.asgi:application", env, workers=workers) as server:
        yield server


async def _load(port: int, plain_keys: list[str], seconds: float) -> tuple[int, int, list[float], float]:
    import httpx2

    url = f"http://127.0.0.1:{port}/mcp"
    latencies: list[float] = []
    counts = {"answered": 0, "errors": 0}
    deadline = time.monotonic() + seconds

    async def client(key: str) -> None:
        headers = {
            "Authorization": f"Bearer {key}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        async with httpx2.AsyncClient(timeout=60, headers=headers) as http:
            hello = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "load", "version": "1"},
                },
            }
            await http.post(url, json=hello)
            n = 0
            while time.monotonic() < deadline:
                n += 1
                body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "ping"}}
                started = time.perf_counter()
                try:
                    response = await http.post(url, json=body)
                    ok = response.status_code == 200 and not response.json()["result"]["isError"]
                except (httpx2.HTTPError, ValueError, KeyError):
                    ok = False
                latencies.append(time.perf_counter() - started)
                counts["answered" if ok else "errors"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(key) for key in plain_keys))
    return counts["answered"], counts["errors"], latencies, time.perf_counter() - started


if __name__ == "__main__":
    main()
