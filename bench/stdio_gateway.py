"""What the supervisor (and the sandbox) cost a stdio upstream: `tools/call` of old_hotcross's `ping` through bridges
that differ only in how the upstream process is run, measured alternately in the same run.

    .venv/bin/python bench/stdio_gateway.py [--calls 400] [--rounds 5] [--clients 8]

Bridges (each `hotcross.asgi:application`, one worker, `HOTCROSS_MCP_UPSTREAM` = old_hotcross over stdio):
- in-process: `HOTCROSS_MCP_UPSTREAM_SUPERVISOR=false`, the bridge's own child process (before issue 28; breaks a
  disk-backed upstream with several workers);
- supervised: the default, the host's supervisor runs the process and the bridge asks it over a Unix socket;
- organization: supervised, one process per organization, sandboxed (bubblewrap) as by default;
- organization-unsandboxed: the same with `HOTCROSS_MCP_UPSTREAM_SANDBOX=off`.
For each: calls/s with `--clients` in flight and p50 with one in flight (medians over the rounds), and the ratio to
in-process (throughput) and the difference (p50). Database: DATABASE_URL or a SQLite file under var/. Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_server, create_database_if_missing, mcp_calls  # noqa: E402

UPSTREAM = f"{sys.executable} {ROOT / 'tests' / 'support' / 'upstream_servers' / 'old_hotcross.py'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400, help="calls per round with --clients in flight")
    parser.add_argument("--latency-calls", type=int, default=200, help="calls per round with one in flight")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench-stdio-gateway.sqlite3'}")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hotcross.settings"
    os.environ["HOTCROSS_MCP_TOOLS"] = ""
    sys.path.insert(0, str(ROOT))
    (ROOT / "var").mkdir(exist_ok=True)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    create_database_if_missing(connection)
    call_command("migrate", verbosity=0, interactive=False)
    from accounts import services

    org = services.create_organization(name="stdio gateway bench", max_seats=1, subscription_status="active")
    _developer, key = services.add_developer(organization=org, email=f"bench-{uuid.uuid4().hex[:12]}@example.com")
    connection.close()
    auth = {"Authorization": f"Bearer {key}"}

    data = tempfile.TemporaryDirectory(prefix="hotcross-bench-stdio-")
    # What old_hotcross needs inside the sandbox, read-only: this virtualenv, its Python, the test servers' folder.
    sandbox_paths = [sys.prefix, sys.base_prefix, str(ROOT / "tests" / "support" / "upstream_servers")]
    common = {
        "HOTCROSS_MCP_UPSTREAM": UPSTREAM,
        "HOTCROSS_MCP_UPSTREAM_TIMEOUT": "30",
        "HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS": ":".join(sorted(set(sandbox_paths))),
    }
    variants = {
        "in-process": {"HOTCROSS_MCP_UPSTREAM_SUPERVISOR": "false"},
        "supervised": {},
        "organization": {"HOTCROSS_MCP_UPSTREAM_SCOPE": "organization"},
        "organization-unsandboxed": {
            "HOTCROSS_MCP_UPSTREAM_SCOPE": "organization",
            "HOTCROSS_MCP_UPSTREAM_SANDBOX": "off",
        },
    }
    throughput: dict[str, list[float]] = {name: [] for name in variants}
    latency: dict[str, list[float]] = {name: [] for name in variants}
    with contextlib.ExitStack() as stack:
        stack.callback(data.cleanup)
        ports = {}
        for name, extra in variants.items():
            folder = Path(data.name) / name
            env = {**common, "HOTCROSS_MCP_UPSTREAM_DATA_DIR": str(folder), **extra}
            ports[name] = bench_server(stack, "hotcross.asgi:application", **env).port
            asyncio.run(mcp_calls(ports[name], auth, clients=args.clients, calls=100))  # starts the upstream; warm
        print(f"database: {connection.vendor}; {args.clients} in flight; {args.calls} calls per round")
        for round_number in range(1, args.rounds + 1):
            for name, port in ports.items():
                rate, _p50, _p99 = asyncio.run(mcp_calls(port, auth, clients=args.clients, calls=args.calls))
                _rate, p50, _p99 = asyncio.run(mcp_calls(port, auth, clients=1, calls=args.latency_calls))
                throughput[name].append(rate)
                latency[name].append(p50)
                print(f"round {round_number} {name:>26}: {rate:7.0f} calls/s, p50 alone {p50:6.2f} ms", flush=True)
    base_rate = statistics.median(throughput["in-process"])
    base_p50 = statistics.median(latency["in-process"])
    print("\nmedians (ratio to in-process throughput; p50 with one call in flight, difference to in-process)")
    for name in variants:
        rate, p50 = statistics.median(throughput[name]), statistics.median(latency[name])
        print(
            f"{name:>26}: {rate:7.0f} calls/s ({rate / base_rate:4.2f}×), p50 {p50:6.2f} ms ({p50 - base_p50:+5.2f} ms)"
        )
    sandboxed, bare = "organization", "organization-unsandboxed"
    rate_ratio = statistics.median(throughput[sandboxed]) / statistics.median(throughput[bare])
    p50_cost = statistics.median(latency[sandboxed]) - statistics.median(latency[bare])
    print(f"\nthe sandbox's extra cost per call: p50 {p50_cost:+.2f} ms, throughput {rate_ratio:.2f}× of unsandboxed")


if __name__ == "__main__":
    main()
