"""What the gateway costs: `tools/call` of a trivial upstream tool through the bridge vs the upstream directly.

    DATABASE_URL=postgres://…/hotcross_bench_gw .venv/bin/python bench/gateway_overhead.py [--clients 8]
        [--calls 1000] [--rounds 7] [--client aiohttp|httpx] [--no-floor] [--pin] [--before REV]

Servers, measured one at a time and alternately, in the same run:
- direct: the upstream, an `MCPServer` over streamable HTTP (`tests/support/old_hotcross.py http PORT`, stateless
  JSON), its `ping` tool called with no key;
- bridge: `hotcross.asgi:application` in gateway mode (`HOTCROSS_MCP_UPSTREAM` = that same upstream's URL), the full
  path: Host check, key check, caller binding, the plan, direct forwarding (`mcp_bridge.gateway.direct`: one POST on
  aiohttp's pooled connections, without the SDK's server), metering;
- floor (unless `--no-floor`): `bench/gateway_forwarder.py`, a forwarder that does nothing but pass each body on,
  under the same uvicorn on the same client library. What the bridge's own rules cost is the difference between it
  and this; what this costs is what any forwarding process in Python costs on the machine.
With `--pin` the load generator and the upstream share the first CPU and the bridges run on the others, as if the
bridge had cores of its own in front of the upstream's (by default all share the machine's cores, the harder case).
With `--before REV` (a git revision, e.g. `main`) one more server joins the rounds: the bridge of that revision
(`git archive` into a temporary folder, same database, same upstream), so a change is measured before and after in
the same run.
A load generator in this process keeps `--clients` requests in flight, on aiohttp by default (`--client httpx`: on
httpx2, as `bench/mcp_overhead.py`, which costs it three times the CPU per call). It shares the machine's cores with
the servers, so the lighter it is, the less it takes from them. It prints each round, then the medians of calls/s,
p50 and p99 for each, the throughput ratio (target: bridge ≥ 0.80 of direct) and what the bridge adds at p50
(target: ≤ 1 ms) with one call in flight (`--latency-calls` per round, alternating too: with 8 in flight on a
saturated machine p50 is mostly queueing, the throughput ratio again), the CPU time per call of each server, of the
upstream and of the load generator (Linux; steadier than calls/s on a shared machine, and it says which process the
time goes to), and checks that the bridge recorded one usage event per forwarded call it answered.

DATABASE_URL defaults to a SQLite file under var/; the database is created if missing and migrated first. Exits 1 if
the usage events do not match the calls answered. Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import serve_command, uvicorn  # noqa: E402
from mcp_overhead import _create_database_if_missing  # noqa: E402  (the same harness)
from mcp_overhead import _load as _load_httpx  # noqa: E402

from tests.support.servers import RunningServer  # noqa: E402

UPSTREAM = ROOT / "tests" / "support" / "old_hotcross.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="requests kept in flight (default 8)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per measured round (default 1000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per server, alternating (default 7)")
    parser.add_argument("--before", metavar="REV", help="also measure the bridge of this git revision")
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp", help="the load generator's")
    parser.add_argument("--no-floor", action="store_true", help="leave out the do-nothing forwarder")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the load generator and the upstream on the first CPU, the bridges on the others (Linux)",
    )
    parser.add_argument(
        "--latency-calls", type=int, default=500, help="calls per round with one call in flight (default 500)"
    )
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench-gateway.sqlite3'}")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hotcross.settings"
    os.environ["HOTCROSS_MCP_TOOLS"] = ""
    sys.path.insert(0, str(ROOT))
    (ROOT / "var").mkdir(exist_ok=True)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    _create_database_if_missing(connection)
    call_command("migrate", verbosity=0, interactive=False)
    from accounts import services
    from accounts.models import UsageEvent

    org = services.create_organization(name="Gateway overhead bench", max_seats=1, subscription_status="active")
    developer, key = services.add_developer(organization=org, email=f"bench-{uuid.uuid4().hex[:12]}@example.com")
    connection.close()

    servers_started = contextlib.ExitStack()  # stopped at the end, the last started first (the upstream last)
    upstream = _start_upstream(servers_started)
    upstream_url = f"{upstream.base}/mcp"
    os.environ["HOTCROSS_MCP_UPSTREAM"] = upstream_url
    os.environ["HOTCROSS_MCP_UPSTREAM_TIMEOUT"] = "30"
    print(f"database: {connection.vendor}; clients in flight: {args.clients}; calls per round: {args.calls}")
    print(f"upstream: {upstream_url} (tests/support/old_hotcross.py, stateless JSON); load generator: {args.client}")
    from mcp_overhead import _start

    bridge = _start(servers_started, "hotcross.asgi:application")
    auth = {"Authorization": f"Bearer {key}"}
    servers = [("direct", upstream.port, {}), ("bridge", bridge.port, auth)]
    pids = {"direct": upstream.process.pid, "bridge": bridge.process.pid}
    if not args.no_floor:
        floor = _start(servers_started, "gateway_forwarder:app")
        servers.append(("floor", floor.port, {}))
        pids["floor"] = floor.process.pid
    load = _load_aiohttp if args.client == "aiohttp" else _load_httpx
    scratch = tempfile.TemporaryDirectory(prefix="hotcross-bench-before-")
    servers_started.callback(scratch.cleanup)  # once the server of --before has stopped
    if args.before:
        before = _start_revision(servers_started, args.before, Path(scratch.name))
        servers.append(("before", before.port, auth))
        pids["before"] = before.process.pid
        print(f"before: the bridge of {args.before}")
    if args.pin:
        # As if the bridge ran on a machine (or cores) of its own in front of the upstream's: the load generator and
        # the upstream share the first CPU in every round, the bridges (and the floor) get the rest.
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin needs at least two CPUs")
        _pin(os.getpid(), cpus[:1])
        for name, pid in pids.items():  # "direct" is the upstream's process
            _pin(pid, cpus[:1] if name == "direct" else cpus[1:])
        print(f"pinned: load generator and upstream on CPU {cpus[0]}, the bridges on {cpus[1:]}")
    metering = {"bridge", "before"}  # the servers that record usage events (the floor does not)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in servers}
    # CPU time per call of the server asked, of the upstream and of the load generator (Linux /proc): on a machine
    # others load too, a steadier figure than calls/s, and it says where the time goes.
    cpu: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in servers}
    alone: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in servers}
    bridge_calls = 0
    try:
        for name, port, headers in servers:
            asyncio.run(load(port, headers, clients=args.clients, calls=200))  # warm up
            bridge_calls += 200 if name in metering else 0
        for round_number in range(1, args.rounds + 1):
            for name, port, headers in servers:
                server_cpu, upstream_cpu = _cpu_seconds(pids[name]), _cpu_seconds(upstream.process.pid)
                client_cpu = time.process_time()
                throughput, p50, p99 = asyncio.run(load(port, headers, clients=args.clients, calls=args.calls))
                client_cpu = (time.process_time() - client_cpu) * 1000 / args.calls
                server_cpu = (_cpu_seconds(pids[name]) - server_cpu) * 1000 / args.calls
                upstream_cpu = (_cpu_seconds(upstream.process.pid) - upstream_cpu) * 1000 / args.calls
                results[name].append((throughput, p50, p99))
                cpu[name].append((0.0 if name == "direct" else server_cpu, upstream_cpu, client_cpu))
                bridge_calls += args.calls if name in metering else 0
                print(
                    f"round {round_number} {name:6}: {throughput:8.1f} calls/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
                    f"  cpu/call: server {cpu[name][-1][0]:.3f} ms, upstream {upstream_cpu:.3f} ms, "
                    f"load generator {client_cpu:.3f} ms"
                )
        # What the bridge adds to a call's time, without queueing: one call in flight (with 8 in flight on a saturated
        # machine, p50 is mostly the wait behind the other calls, i.e. the throughput figure again).
        for round_number in range(1, args.rounds + 1):
            for name, port, headers in servers:
                _, p50, p99 = asyncio.run(load(port, headers, clients=1, calls=args.latency_calls))
                alone[name].append((p50, p99))
                bridge_calls += args.latency_calls if name in metering else 0
                print(f"one in flight, round {round_number} {name:6}: p50 {p50:6.3f} ms  p99 {p99:6.3f} ms")
    finally:
        servers_started.close()

    print()
    medians = {}
    for name, rounds in results.items():
        medians[name] = tuple(statistics.median(r[i] for r in rounds) for i in range(3))
        throughput, p50, p99 = medians[name]
        own, upstream_own, client_own = (statistics.median(c[i] for c in cpu[name]) for i in range(3))
        print(
            f"{name:6} (median of {len(rounds)}): {throughput:8.1f} calls/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
            f"  cpu/call: server {own:.3f} ms, upstream {upstream_own:.3f} ms, load generator {client_own:.3f} ms"
        )
    for name in [name for name in results if name != "direct"]:
        ratio = medians[name][0] / medians["direct"][0]
        paired = statistics.median(b[0] / d[0] for d, b in zip(results["direct"], results[name], strict=True))
        added = medians[name][1] - medians["direct"][1]
        alone_added = statistics.median(b[0] - d[0] for d, b in zip(alone["direct"], alone[name], strict=True))
        alone_p50 = statistics.median(b[0] for b in alone[name])
        target = " (target >= 0.80)" if name != "floor" else " (no rules at all: the most a forwarder keeps here)"
        print(f"{name}/direct throughput ratio: {ratio:.3f}{target}; median of the rounds' own: {paired:.3f}")
        target = "target <= 1 ms; " if name != "floor" else ""
        print(
            f"{name}: added at p50 with one call in flight: {alone_added:.3f} ms ({target}its p50 {alone_p50:.3f} ms); "
            f"with {args.clients} in flight: {added:.2f} ms (queueing included)"
        )
    if "floor" in medians:
        rules = statistics.median(c[0] for c in cpu["bridge"]) - statistics.median(c[0] for c in cpu["floor"])
        print(f"the bridge's rules (key, plan, metering, logging, checks): {rules:.3f} ms CPU per call over the floor")
    metered = UsageEvent.objects.filter(developer=developer).count()
    verdict = "OK" if metered == bridge_calls else "MISMATCH"
    print(f"usage events recorded by the bridge: {metered} for {bridge_calls} forwarded calls answered ({verdict})")
    if metered != bridge_calls:
        raise SystemExit(1)


async def _load_aiohttp(port: int, headers: dict[str, str], *, clients: int, calls: int) -> tuple[float, float, float]:
    """`mcp_overhead._load` on aiohttp: `clients` calls of `ping` in flight, `calls` in all.

    Returns (calls/s, p50 ms, p99 ms)."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/mcp"
    headers = {**headers, "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    latencies: list[float] = []
    remaining = calls

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            body = json.dumps({"jsonrpc": "2.0", "id": remaining, "method": "tools/call", "params": {"name": "ping"}})
            started = time.perf_counter()
            async with http.post(url, data=body.encode(), headers=headers) as response:
                raw = await response.read()
            latencies.append(time.perf_counter() - started)
            answer = json.loads(raw)
            if response.status != 200 or answer["result"]["isError"]:
                raise SystemExit(f"call failed: {response.status} {raw[:300]!r}")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return calls / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def _pin(pid: int, cpus: list[int]) -> None:
    """Every thread of process `pid` (and the threads it starts later) on `cpus`."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended since the listing
            os.sched_setaffinity(int(task), cpus)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_revision(stack: contextlib.ExitStack, revision: str, folder: Path) -> RunningServer:
    """The bridge of a git revision, exported (`git archive`) into `folder` and served from there (uvicorn's
    `--app-dir`, and PYTHONPATH), on a socket of its own; stopped when `stack` closes."""
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    env = {**os.environ, "PYTHONPATH": str(folder), "LOG_LEVEL": "WARNING"}
    env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    return stack.enter_context(uvicorn("hotcross.asgi:application", env, args=("--app-dir", str(folder))))


def _start_upstream(stack: contextlib.ExitStack) -> RunningServer:
    """The upstream (`tests/support/old_hotcross.py http PORT`), which binds its port itself; stopped when `stack`
    closes. `-P`: its folder (tests/support, whose mcp.py would shadow the mcp SDK) is not put on sys.path."""
    return stack.enter_context(serve_command([sys.executable, "-P", str(UPSTREAM), "http", "{port}"]))


if __name__ == "__main__":
    main()
