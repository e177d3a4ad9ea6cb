"""What the MCP bridge costs: `tools/call` of a trivial tool over streamable HTTP, bridge vs bare server.

    DATABASE_URL=postgres://… .venv/bin/python bench/mcp_overhead.py [--clients 8] [--calls 2000] [--rounds 7]
        [--redis-url redis://127.0.0.1:6379/11] [--check-iterations 20000]

Three uvicorn processes, one worker each, measured one at a time and alternately:
- bridge: `hotcross.asgi:application`, the full path (Host check, key check, caller binding, metering INSERT), for a
  developer with no plan (no limit checked);
- limited: the same with `REDIS_URL` (`--redis-url`), for a developer whose plan has rate limits per developer and per
  organization (high enough never to refuse; every call is checked against the Redis buckets, most of them through
  the worker's lease, see `accounts.rate_buckets`) and a monthly cap that refuses;
- bare: the same `MCPServer` (same tool, stateless JSON mode) with no auth and no metering.
Then a micro-benchmark of `accounts.rate_buckets` in this process: µs per check, Redis (sync, one round trip each; and
the async check under sustained demand, with leases) and per-process buckets.
A load generator in this process keeps `--clients` requests in flight. It prints each round, then the median
throughput and latency of each, and the ratio (target: bridge ≥ 0.90 of bare): the ratio of the medians, and the
median of each round's own ratio (a round measures bare, then bridge, so a machine that slows down for a while
slows both). Many short rounds make both steadier than a few long ones on a shared machine. It also checks that
the bridge recorded exactly one usage event per call it answered, and that its rollups (written in the same statement
as the events, at every flush) count the same.

DATABASE_URL defaults to a SQLite file under var/; the database is created if missing and migrated first. Exits 1
if the usage events do not match the calls answered. Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from common import bench_server, create_database_if_missing, mcp_calls

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent


async def ping() -> str:
    """The trivial tool both servers serve."""
    return "pong"


TOOLS = [ping]


def bare_app():  # uvicorn --factory mcp_overhead:bare_app
    import django

    django.setup()
    from mcp_bridge.http import MCPHttpApp
    from mcp_bridge.server import build_server

    return MCPHttpApp(build_server(bridged=False, modules=["mcp_overhead"]), authenticated=False)


# --- the harness -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="requests kept in flight (default 8)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per measured round (default 2000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per server, alternating (default 7)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11", help="Redis of the limited server")
    parser.add_argument("--check-iterations", type=int, default=20000, help="limit checks in the micro-benchmark")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench-mcp.sqlite3'}")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hotcross.settings"
    os.environ["HOTCROSS_MCP_TOOLS"] = "mcp_overhead"
    sys.path.insert(0, str(ROOT))
    (ROOT / "var").mkdir(exist_ok=True)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    create_database_if_missing(connection)
    call_command("migrate", verbosity=0, interactive=False)
    from django.db.models import Sum

    from accounts import services
    from accounts.models import UsageEvent, UsageRollup

    org = services.create_organization(name="MCP overhead bench", max_seats=1, subscription_status="active")
    developer, key = services.add_developer(organization=org, email=f"bench-{uuid.uuid4().hex[:12]}@example.com")
    from accounts.models import Plan
    from accounts.services import plans as plan_services

    plan = plan_services.save_plan(
        plan=Plan(
            code=f"bench-{uuid.uuid4().hex[:8]}",
            name="Bench limits",
            rate_limit_per_developer=100_000_000,
            rate_limit_per_organization=100_000_000,
            monthly_calls_per_seat=1_000_000_000,
        )
    )
    limited_org = services.create_organization(name="Limits bench", max_seats=1, subscription_status="active")
    plan_services.set_plan(organization=limited_org, plan=plan)
    limited_developer, limited_key = services.add_developer(
        organization=limited_org, email=f"bench-{uuid.uuid4().hex[:12]}@example.com"
    )
    connection.close()

    print(f"database: {connection.vendor}; clients in flight: {args.clients}; calls per round: {args.calls}")
    results: dict[str, list[tuple[float, float, float]]] = {"bare": [], "bridge": [], "limited": []}
    answered = {"bare": 0, "bridge": 0, "limited": 0}
    with contextlib.ExitStack() as stack:  # the servers stop at the end
        bridge = bench_server(stack, "hotcross.asgi:application")
        limited = bench_server(stack, "hotcross.asgi:application", REDIS_URL=args.redis_url)
        bare = bench_server(stack, "mcp_overhead:bare_app", "--factory")
        servers = (
            ("bare", bare, {}),
            ("bridge", bridge, {"Authorization": f"Bearer {key}"}),
            ("limited", limited, {"Authorization": f"Bearer {limited_key}"}),
        )
        for name, server, headers in servers:
            asyncio.run(mcp_calls(server.port, headers, clients=args.clients, calls=300))  # warm up
            answered[name] += 300
        for round_number in range(1, args.rounds + 1):
            for name, server, headers in servers:
                throughput, p50, p99 = asyncio.run(
                    mcp_calls(server.port, headers, clients=args.clients, calls=args.calls)
                )
                results[name].append((throughput, p50, p99))
                answered[name] += args.calls
                print(f"round {round_number} {name:7}: {throughput:8.1f} calls/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")

    print()
    summary = {}
    for name, rounds in results.items():
        throughput = statistics.median(r[0] for r in rounds)
        p50 = statistics.median(r[1] for r in rounds)
        p99 = statistics.median(r[2] for r in rounds)
        summary[name] = throughput
        print(f"{name:7} (median of {len(rounds)}): {throughput:8.1f} calls/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")

    def paired(a: str, b: str) -> float:
        return statistics.median(x[0] / y[0] for x, y in zip(results[a], results[b], strict=True))

    print(f"bridge/bare throughput ratio: {summary['bridge'] / summary['bare']:.3f} (target >= 0.90)")
    print(f"median of the rounds' own ratios: {paired('bridge', 'bare'):.3f}")
    print(
        f"limited (Redis limits on)/bare: {summary['limited'] / summary['bare']:.3f} "
        f"(rounds: {paired('limited', 'bare'):.3f}); limited/bridge: {summary['limited'] / summary['bridge']:.3f} "
        f"(rounds: {paired('limited', 'bridge'):.3f})"
    )
    _limit_check_cost(args.redis_url, args.check_iterations)
    mismatch = False
    for name, who in (("bridge", developer), ("limited", limited_developer)):
        metered = UsageEvent.objects.filter(developer=who).count()
        rolled_up = UsageRollup.objects.filter(developer=who).aggregate(n=Sum("calls"))["n"] or 0
        verdict = "OK" if metered == answered[name] == rolled_up else "MISMATCH"
        mismatch |= verdict != "OK"
        print(
            f"usage events recorded by {name}: {metered}, in its rollups: {rolled_up}, "
            f"for {answered[name]} calls answered ({verdict})"
        )
    if mismatch:
        raise SystemExit(1)


def _limit_check_cost(redis_url: str, iterations: int) -> None:
    """µs per `accounts.rate_buckets` check (developer and organization buckets together), in Redis and in this process,
    against an empty loop as the baseline and a Redis PING (one round trip) as the floor of any Redis check."""
    from django.core.cache.backends.redis import RedisCache

    from accounts import rate_buckets

    redis_buckets = rate_buckets.RedisBuckets(
        RedisCache(redis_url, {"OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}})
    )
    local_buckets = rate_buckets.LocalBuckets()
    developer, organization = f"{rate_buckets.KEY_PREFIX}d:bench", f"{rate_buckets.KEY_PREFIX}o:bench"
    import redis

    ping = redis.Redis.from_url(redis_url).ping
    figures = {}
    for name, take in (
        ("baseline (no check)", lambda: rate_buckets.ALLOWED),
        ("Redis PING (the floor)", lambda: ping() and rate_buckets.ALLOWED),
        ("per-process buckets", lambda: local_buckets.take(developer, organization, 10**9, 10**9)),
        ("Redis buckets (Lua)", lambda: redis_buckets.take(developer, organization, 10**9, 10**9)),
    ):
        for _ in range(200):
            take()  # warm up (the Redis script is loaded once)
        started = time.perf_counter()
        for _ in range(iterations):
            decision = take()
        figures[name] = (time.perf_counter() - started) / iterations * 1e6
        assert decision.allowed
    figures["Redis, async, leased"] = _leased_check_cost(redis_buckets, iterations)
    print(f"limit check cost ({iterations} checks each):")
    for name, micros in figures.items():
        ratio = micros / figures["baseline (no check)"]
        print(f"  {name:22}: {micros:8.2f} µs per check ({ratio:,.0f}× the baseline)")


def _leased_check_cost(redis_buckets, iterations: int) -> float:
    """µs per `RedisBuckets.atake` (what the bridge awaits) under sustained demand: after one warm lease period, most
    checks are served from this event loop's lease, one Redis round trip per `MAX_LEASE` calls at most."""
    from accounts import rate_buckets

    developer, organization = f"{rate_buckets.KEY_PREFIX}d:bench-leased", f"{rate_buckets.KEY_PREFIX}o:bench-leased"

    async def run() -> float:
        warm_until = time.monotonic() + 2 * rate_buckets.lease_seconds()
        while time.monotonic() < warm_until:  # a period of demand, so the next takes ask for leases
            await redis_buckets.atake(developer, organization, 10**9, 10**9)
        started = time.perf_counter()
        for _ in range(iterations):
            decision = await redis_buckets.atake(developer, organization, 10**9, 10**9)
        elapsed = time.perf_counter() - started
        assert decision.allowed
        return elapsed / iterations * 1e6

    return asyncio.run(run())


if __name__ == "__main__":
    main()
