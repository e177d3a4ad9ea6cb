"""What the MCP bridge costs: `tools/call` of a trivial tool over streamable HTTP, bridge vs bare server.

    DATABASE_URL=postgres://… .venv/bin/python bench/mcp_overhead.py [--clients 8] [--calls 2000] [--rounds 7]

Two uvicorn processes, one worker each, measured one at a time and alternately:
- bridge: `hotcross.asgi:application`, the full path (Host check, key check, caller binding, metering INSERT);
- bare: the same `MCPServer` (same tool, stateless JSON mode) with no auth and no metering.
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
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

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

    _create_database_if_missing(connection)
    call_command("migrate", verbosity=0, interactive=False)
    from django.db.models import Sum

    from accounts import services
    from accounts.models import UsageEvent, UsageRollup

    org = services.create_organization(name="MCP overhead bench", max_seats=1, subscription_status="active")
    developer, key = services.add_developer(organization=org, email=f"bench-{uuid.uuid4().hex[:12]}@example.com")
    connection.close()

    print(f"database: {connection.vendor}; clients in flight: {args.clients}; calls per round: {args.calls}")
    bridge = _start(["hotcross.asgi:application"])
    bare = _start(["--factory", "mcp_overhead:bare_app"])
    results: dict[str, list[tuple[float, float, float]]] = {"bare": [], "bridge": []}
    bridge_calls = 0
    try:
        for name, (port, _), headers in (
            ("bare", bare, {}),
            ("bridge", bridge, {"Authorization": f"Bearer {key}"}),
        ):
            asyncio.run(_load(port, headers, clients=args.clients, calls=300))  # warm up
            if name == "bridge":
                bridge_calls += 300
        for round_number in range(1, args.rounds + 1):
            for name, (port, _), headers in (
                ("bare", bare, {}),
                ("bridge", bridge, {"Authorization": f"Bearer {key}"}),
            ):
                throughput, p50, p99 = asyncio.run(_load(port, headers, clients=args.clients, calls=args.calls))
                results[name].append((throughput, p50, p99))
                if name == "bridge":
                    bridge_calls += args.calls
                print(f"round {round_number} {name:6}: {throughput:8.1f} calls/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    finally:
        for _, process in (bridge, bare):
            process.terminate()
            process.wait(timeout=10)

    print()
    summary = {}
    for name, rounds in results.items():
        throughput = statistics.median(r[0] for r in rounds)
        p50 = statistics.median(r[1] for r in rounds)
        p99 = statistics.median(r[2] for r in rounds)
        summary[name] = throughput
        print(f"{name:6} (median of {len(rounds)}): {throughput:8.1f} calls/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    metered = UsageEvent.objects.filter(developer=developer).count()
    paired = statistics.median(
        bridge[0] / bare[0] for bare, bridge in zip(results["bare"], results["bridge"], strict=True)
    )
    print(f"bridge/bare throughput ratio: {summary['bridge'] / summary['bare']:.3f} (target >= 0.90)")
    print(f"median of the rounds' own ratios: {paired:.3f}")
    rolled_up = UsageRollup.objects.filter(developer=developer).aggregate(n=Sum("calls"))["n"] or 0
    verdict = "OK" if metered == bridge_calls == rolled_up else "MISMATCH"
    print(
        f"usage events recorded by the bridge: {metered}, in its rollups: {rolled_up}, "
        f"for {bridge_calls} calls answered ({verdict})"
    )
    if not metered == bridge_calls == rolled_up:
        raise SystemExit(1)


def _create_database_if_missing(connection) -> None:
    """`migrate` needs the database to exist: create a missing PostgreSQL one (SQLite creates its own file)."""
    if connection.vendor != "postgresql":
        return
    name = connection.settings_dict["NAME"]
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            print(f"creating database {name} (first run: migrating takes a minute or two)")
            cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")


_QUIET = ("--no-access-log", "--log-level=warning", "--backlog", "1024")


def _start(app: list[str]) -> tuple[int, subprocess.Popen]:
    # A port of its own rather than a socket handed over with --fd: asyncio sets TCP_NODELAY only on sockets it
    # knows to be TCP, and without it Nagle's algorithm and delayed ACKs add ~40 ms to every answer of both servers.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)]), "LOG_LEVEL": "WARNING"}
    env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *app, *("--host", "127.0.0.1", "--port", str(port)), *_QUIET],
        env=env,
        cwd=ROOT,
    )
    asyncio.run(_wait(port))
    return port, process


async def _wait(port: int) -> None:
    import httpx2

    async with httpx2.AsyncClient() as http:
        for _ in range(300):
            try:
                await http.post(f"http://127.0.0.1:{port}/mcp", json={})
                return
            except httpx2.TransportError:
                await asyncio.sleep(0.2)
    raise SystemExit(f"the server on port {port} did not start")


async def _load(port: int, headers: dict[str, str], *, clients: int, calls: int) -> tuple[float, float, float]:
    import httpx2

    url = f"http://127.0.0.1:{port}/mcp"
    headers = {**headers, "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    latencies: list[float] = []
    remaining = calls

    async def worker(http: httpx2.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            body = {"jsonrpc": "2.0", "id": remaining, "method": "tools/call", "params": {"name": "ping"}}
            started = time.perf_counter()
            response = await http.post(url, json=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            answer = response.json()
            if response.status_code != 200 or answer["result"]["isError"]:
                raise SystemExit(f"call failed: {response.status_code} {response.text[:300]}")

    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return calls / elapsed, statistics.median(latencies) * 1000, p99 * 1000


if __name__ == "__main__":
    main()
