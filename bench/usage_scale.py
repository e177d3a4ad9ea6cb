#!/usr/bin/env python
"""Usage reads at scale on PostgreSQL: the `usage` MCP tool over HTTP and the organization's admin page, for an
organization with 10 000 000 usage events against one with 100 000.

    .venv/bin/python bench/usage_scale.py [--scale 1.0] [--calls 200] [--page-loads 30] [--keep]

Creates a scratch database (`hotcross_bench_scale_usage`, dropped at the end unless --keep), migrates it, and loads:
- "Big": 50 developers and 10 000 000 events over the last 30 days;
- "Mid": 50 developers and 100 000 events (the same size of organization, a hundredth of the events);
- 999 other organizations of 5 developers with the rest of 20 000 000 events.
Events are written with `generate_series`, one INSERT … SELECT per group (into the monthly partitions), then rolled up
with `manage.py usage rebuild-rollups`' own code (the migration's; timed).
`--scale 0.1` loads a tenth (1 M + 2 M; "Mid" keeps 100 000).

Then times, sequentially:
- the `usage` tool through uvicorn (`hotcross.asgi:application`, one worker) with a Big developer's key and a Mid one's:
  p50/p95 of `--calls` JSON-RPC `tools/call` requests each (target p95 ≤ 20 ms);
- the organization's admin change page (chart and per-developer totals) with Django's test client as a superuser:
  p50/p95 of `--page-loads` loads each (target p95 ≤ 300 ms);
- the ratios Big p95 ÷ Mid p95 (target ≤ 1.5: flat in the number of events).
Prints figures, not pass/fail. Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import time

from common import load_developers, parser, percentile, scratch_database, uvicorn

SCRATCH_DB = "hotcross_bench_scale_usage"
BIG_EVENTS = 10_000_000
OTHER_EVENTS = 20_000_000
MID_EVENTS = 100_000
OTHERS = 1_000
TOOLS = "{search,whoami,usage,fetch_page,summarize}"


def parse_args() -> argparse.Namespace:
    arguments = parser(__doc__)
    arguments.add_argument("--scale", type=float, default=1.0, help="fraction of the 10 M + 20 M events to load")
    arguments.add_argument("--calls", type=int, default=200, help="usage tool calls per organization")
    arguments.add_argument("--page-loads", type=int, default=30, help="admin page loads per organization")
    return arguments.parse_args()


def main() -> None:
    args = parse_args()
    with scratch_database(
        args.server,
        SCRATCH_DB,
        keep=args.keep,
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",  # plain HTTP on 127.0.0.1, as the tests' servers
    ):
        run(args)


def run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts import partitions
    from accounts.services.usage_upkeep import rebuild_rollups

    print(f"scratch database {SCRATCH_DB}: migrating…", flush=True)
    call_command("migrate", verbosity=0)
    now = timezone.now()
    load_developers(OTHERS - 1, 5, now)

    def fifty(name: str) -> tuple:
        # Big and Mid alike (50 developers each): the page's and the tool's cost may differ only by their events.
        orgs, _, plain_keys = load_developers(
            1,
            50,
            now,
            organization=lambda i: {"name": name, "stripe_customer_id": f"cus_{name.lower()}", "max_seats": 50},
            developer=lambda i: {"email": f"{name.lower()}{i}@example.com"},
        )
        return orgs[0], plain_keys[0]

    (big, big_key), (mid, mid_key) = fifty("Big"), fifty("Mid")
    partitions.create_partitions(connection, since=now - datetime.timedelta(days=31), until=now)

    big_events = int(BIG_EVENTS * args.scale)
    other_events = max(int(OTHER_EVENTS * args.scale), MID_EVENTS + OTHERS)
    print(
        f"loading {big_events:,} events into Big, {MID_EVENTS:,} into Mid, {other_events - MID_EVENTS:,} over the "
        f"other {OTHERS - 1} organizations (last 30 days)…",
        flush=True,
    )
    started = time.perf_counter()
    _load_events(connection, "organization_id = %s", [big.id], big_events, now)
    _load_events(connection, "organization_id = %s", [mid.id], MID_EVENTS, now)
    _load_events(connection, "organization_id NOT IN (%s, %s)", [big.id, mid.id], other_events - MID_EVENTS, now)
    loaded = time.perf_counter() - started
    total = big_events + other_events
    print(f"  {total:,} events in {loaded:.0f} s ({total / loaded:,.0f} events/s)", flush=True)

    started = time.perf_counter()
    rebuild_rollups(since=(now - datetime.timedelta(days=31)).date())
    rolled = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("SELECT COUNT(*) FROM accounts_usagerollup")
        rollup_rows = cursor.fetchone()[0]
    print(
        f"  rolled up in {rolled:.0f} s ({total / rolled:,.0f} events/s) into {rollup_rows:,} rollup rows", flush=True
    )
    connection.close()

    tool = {name: _usage_tool(key, args.calls) for name, key in (("Big", big_key), ("Mid", mid_key))}
    page = {name: _admin_page(org, args.page_loads) for name, org in (("Big", big), ("Mid", mid))}

    print(f"\n{'read':<34} {'events':>12} {'p50 ms':>8} {'p95 ms':>8}")
    for name, events in (("Big", big_events), ("Mid", MID_EVENTS)):
        print(f"{'usage tool over HTTP, ' + name:<34} {events:>12,} {tool[name][0]:>8.1f} {tool[name][1]:>8.1f}")
    for name, events in (("Big", big_events), ("Mid", MID_EVENTS)):
        print(f"{'organization admin page, ' + name:<34} {events:>12,} {page[name][0]:>8.1f} {page[name][1]:>8.1f}")
    print(
        f"\nusage tool: p95 {tool['Big'][1]:.1f} ms (target ≤ 20); ratio Big/Mid {tool['Big'][1] / tool['Mid'][1]:.2f} "
        f"(target ≤ 1.5)\norganization page: p95 {page['Big'][1]:.1f} ms (target ≤ 300); ratio Big/Mid "
        f"{page['Big'][1] / page['Mid'][1]:.2f} (target ≤ 1.5)"
    )


def _load_events(connection, where: str, params: list, count: int, now: datetime.datetime) -> None:
    """`count` events over the developers matching `where`, spread over the last 30 days, 2 % errors."""
    if count <= 0:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH devs AS (
                SELECT id, organization_id, (row_number() OVER (ORDER BY id)) - 1 AS n
                FROM accounts_developer WHERE {where}
            ), total AS (SELECT COUNT(*) AS c FROM devs)
            INSERT INTO accounts_usageevent (developer_id, organization_id, tool_name, created_at, ok, duration_ms)
            SELECT d.id, d.organization_id, (%s::text[])[1 + g %% 5],
                   %s::timestamptz - (g::float8 / %s) * interval '30 days', g %% 50 <> 0, g %% 300
            FROM generate_series(0, %s - 1) AS g CROSS JOIN total JOIN devs d ON d.n = g %% total.c
            """,
            [*params, TOOLS, now, count, count],
        )


def _usage_tool(key: str, calls: int) -> tuple[float, float]:
    """p50, p95 in ms of the `usage` tool called over HTTP, one call at a time (uvicorn, one worker)."""
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING"}
    with uvicorn("hotcross.asgi:application", env) as server:
        return asyncio.run(_call_usage(server.port, key, calls))


async def _call_usage(port: int, key: str, calls: int) -> tuple[float, float]:
    import httpx2

    url = f"http://127.0.0.1:{port}/mcp"
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    async with httpx2.AsyncClient(timeout=60) as http:
        samples = []
        for n in range(calls + 20):
            body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "usage", "arguments": {}}}
            started = time.perf_counter()
            response = await http.post(url, json=body, headers=headers)
            elapsed = time.perf_counter() - started
            result = response.json().get("result", {})
            if response.status_code != 200 or result.get("isError"):
                raise SystemExit(f"usage failed: {response.status_code} {response.text[:300]}")
            if n >= 20:  # the first calls warm the server up
                samples.append(elapsed * 1000)
    ordered = sorted(samples)
    return statistics.median(ordered), percentile(ordered, 0.95)


def _admin_page(organization, loads: int) -> tuple[float, float]:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    user = User.objects.filter(username="bench-admin").first() or User.objects.create_superuser(
        "bench-admin", "bench@example.com", "bench-pw-123"
    )
    client = Client()
    client.force_login(user)
    url = reverse("admin:accounts_organization_change", args=[organization.pk])
    samples = []
    for n in range(loads + 3):
        started = time.perf_counter()
        response = client.get(url, HTTP_HOST="127.0.0.1")
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"admin page answered {response.status_code}")
        if n >= 3:
            samples.append(elapsed * 1000)
    ordered = sorted(samples)
    return statistics.median(ordered), percentile(ordered, 0.95)


if __name__ == "__main__":
    main()
