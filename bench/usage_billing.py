#!/usr/bin/env python
"""Usage billing's planning cost on PostgreSQL: what `manage.py billing report-usage` spends per organization to work
out its reports, for an organization with many calls this month against one with few.

    .venv/bin/python bench/usage_billing.py [--big 2000000] [--others 200] [--repeat 20] [--keep]

Creates a scratch database (`hotcross_bench_usage_billing`, dropped at the end unless --keep), migrates it, and loads
organizations on an `overage` plan (the costlier rule: the month's calls before the window come from the rollups):
- "Big": 20 developers and `--big` events over the last 30 days;
- "Small": 20 developers and 20 000 events over the same days;
- `--others` organizations of 2 developers with 500 events each.
Then times (Stripe is not called: this is the plan phase, the part that reads usage):
- the first run of every organization (catch-up from the start of the month), in total;
- a steady run (every interval of the late window recomputed, nothing new to write) of Big and of Small:
  p50/p95 of `--repeat` runs each, and the ratio Big p50 ÷ Small p50. Big has 100× Small's calls in the month and in
  the late window: the month before the window costs one rollup sum, the window is counted by hour from the raw
  events (an index range scan that grows with the window's calls);
- a steady run over every organization, in total and per organization.
Prints figures, not pass/fail. Not run by CI.
"""

from __future__ import annotations

import argparse
import datetime
import time

from common import load_developers, parser, percentile, scratch_database

SCRATCH_DB = "hotcross_bench_usage_billing"
SMALL_EVENTS = 20_000
OTHER_EVENTS = 500


def parse_args() -> argparse.Namespace:
    arguments = parser(__doc__)
    arguments.add_argument("--big", type=int, default=2_000_000, help="events of the big organization")
    arguments.add_argument("--others", type=int, default=200, help="other organizations billed by usage")
    arguments.add_argument("--repeat", type=int, default=20, help="steady runs timed per organization")
    return arguments.parse_args()


def main() -> None:
    args = parse_args()
    with scratch_database(args.server, SCRATCH_DB, keep=args.keep, LOG_LEVEL="WARNING"):
        run(args)


def run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts import partitions, plans
    from accounts.billing import usage as usage_billing
    from accounts.models import AtCap, MeteredBilling, Organization, Plan, UsageBillingState
    from accounts.services.usage_upkeep import rebuild_rollups

    print(f"scratch database {SCRATCH_DB}: migrating…", flush=True)
    call_command("migrate", verbosity=0)
    now = timezone.now()
    plan = Plan.objects.create(
        code="overage",
        name="Overage",
        monthly_calls_per_seat=1_000,
        at_cap=AtCap.OVERAGE,
        metered_billing=MeteredBilling.OVERAGE,
        stripe_meter_event_name="hotcross_calls",
    )

    def group(name: str, count: int, developers: int) -> list:
        orgs, _, _ = load_developers(
            count,
            developers,
            now,
            organization=lambda i: {"name": f"{name} {i}", "stripe_customer_id": f"cus_{name.lower()}{i}"},
            developer=lambda i: {"email": f"{name.lower()}{i}@example.com"},
        )
        return orgs

    big, small = group("Big", 1, 20)[0], group("Small", 1, 20)[0]
    others = group("Other", args.others, 2)
    Organization.objects.update(plan=plan, max_seats=20)
    partitions.create_partitions(connection, since=now - datetime.timedelta(days=31), until=now)
    print(
        f"loading {args.big:,} events into Big, {SMALL_EVENTS:,} into Small, {OTHER_EVENTS:,} into each of "
        f"{args.others} others (last 30 days)…",
        flush=True,
    )
    started = time.perf_counter()
    _load_events(connection, "organization_id = %s", [big.id], args.big, now)
    _load_events(connection, "organization_id = %s", [small.id], SMALL_EVENTS, now)
    for other in others:
        _load_events(connection, "organization_id = %s", [other.id], OTHER_EVENTS, now)
    rebuild_rollups(since=(now - datetime.timedelta(days=31)).date())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"  loaded and rolled up in {time.perf_counter() - started:.0f} s", flush=True)

    month = plans.month_start(now)
    UsageBillingState.objects.bulk_create(
        UsageBillingState(organization=o, billing_since=month, planned_until=month) for o in [big, small, *others]
    )
    billable = usage_billing.billable_organizations()
    by_id = {o.pk: (o, p) for o, p in billable}

    started = time.perf_counter()
    written = sum(usage_billing._plan_organization(o, p, now) for o, p in billable)
    first_run = time.perf_counter() - started
    print(
        f"\nfirst run (catch-up from {month:%Y-%m-%d}): {len(billable)} organizations, {written:,} reports written, "
        f"{first_run:.2f} s",
        flush=True,
    )

    def steady(organization: Organization) -> list[float]:
        org, org_plan = by_id[organization.pk]
        samples = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            assert usage_billing._plan_organization(org, org_plan, now) == 0
            samples.append((time.perf_counter() - started) * 1000)
        return sorted(samples)

    big_ms, small_ms = steady(big), steady(small)
    started = time.perf_counter()
    for o, p in billable:
        usage_billing._plan_organization(o, p, now)
    every = time.perf_counter() - started

    print(f"\n{'steady run of one organization':<36} {'events':>12} {'p50 ms':>8} {'p95 ms':>8}")
    for name, events, samples in (("Big", args.big, big_ms), ("Small", SMALL_EVENTS, small_ms)):
        print(f"{name:<36} {events:>12,} {percentile(samples, 0.5):>8.1f} {percentile(samples, 0.95):>8.1f}")
    print(
        f"\nratio Big/Small p50: {percentile(big_ms, 0.5) / percentile(small_ms, 0.5):.2f} (for 100× the calls)\n"
        f"steady run over every organization: {every:.2f} s for {len(billable)} "
        f"({every / len(billable) * 1000:.1f} ms each)"
    )


def _load_events(connection, where: str, params: list, count: int, now: datetime.datetime) -> None:
    """`count` events over the developers matching `where`, spread over the last 30 days."""
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
            SELECT d.id, d.organization_id, 'search',
                   %s::timestamptz - (g::float8 / %s) * interval '30 days', true, 5
            FROM generate_series(0, %s - 1) AS g CROSS JOIN total JOIN devs d ON d.n = g %% total.c
            """,
            [*params, now, count, count],
        )


if __name__ == "__main__":
    main()
