#!/usr/bin/env python
"""Key-check speed on PostgreSQL: `authenticate_key` cold and warm against the old system's per-call SQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/key_check.py

Creates a scratch database (dropped at the end) holding 10 000 organizations and 100 000 developers, then times, over
one connection each:
  baseline  what the old server did on every call: one SELECT joining developer and organization with a COUNT(*)
            sub-query of the organization's active developers, then UPDATE … SET api_key_last_used_at = NOW(),
            both as prepared statements (the old server's asyncpg prepared every query)
  cold      authenticate_key with its memory off (every check asks the database), keys used within the last minute
  cold, first use in a minute
            the same for keys last used over a minute ago: the check is still one read and only notes the use
            (accounts.last_used); the write happens behind it
  … + batched write
            the same, each check also charged its share of the batched last-used write that follows (one UPDATE per
            100 checks, timed, as the metering flush or the background writer makes it)
  warm      authenticate_key answered from the process's (≤ 1 s) memory
Prints checks/s, p50 and p99 per variant and the ratios against the baseline (targets: warm ≥ 20×, cold ≥ 2.5× with
and without the last-used write due).
"""

from __future__ import annotations

import argparse
import random
import time

from common import check_benchmark, load_developers, summary, timed

ORGS = 10_000
DEVS_PER_ORG = 10
SCRATCH_DB = "hotcross_bench_scale_keys"


def run(args: argparse.Namespace) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts import check_cache, keys, last_used
    from accounts.authentication import authenticate_key
    from accounts.developer_check import preparing_cursor
    from accounts.models import Developer, Organization

    print(
        f"PostgreSQL scratch database {SCRATCH_DB}: migrating and loading {ORGS} organizations, "
        f"{ORGS * DEVS_PER_ORG} developers…",
        flush=True,
    )
    call_command("migrate", "accounts", verbosity=0)
    _, _, plain_keys = load_developers(ORGS, DEVS_PER_ORG, timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    rng = random.Random(42)
    sample = [rng.choice(plain_keys) for _ in range(args.calls)]

    dev_table, org_table = Developer._meta.db_table, Organization._meta.db_table
    baseline_select = f"""
        SELECT d.id, d.organization_id, d.is_active, d.api_key_revoked_at, o.subscription_status, o.max_seats,
               (SELECT COUNT(*) FROM {dev_table} a
                 WHERE a.organization_id = d.organization_id AND a.is_active) AS active_developers
          FROM {dev_table} d JOIN {org_table} o ON o.id = d.organization_id
         WHERE d.api_key_hash = %s"""
    baseline_update = f"UPDATE {dev_table} SET api_key_last_used_at = NOW() WHERE id = %s"

    def baseline(key: str) -> None:
        # Prepared statements like the key check's (and like the old server's asyncpg, which prepares every query).
        with preparing_cursor(connection) as cursor:
            cursor.execute(baseline_select, [keys.hash_key(key)])
            row = cursor.fetchone()
            cursor.execute(baseline_update, [row[0]])

    def reset_last_used(when) -> None:
        # Every variant starts from the same table: one version of each row, compacted (a mass UPDATE leaves 100 000
        # dead versions that would slow down whichever variant comes next).
        Developer.objects.update(api_key_last_used_at=when)
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (FULL, ANALYZE) {dev_table}")

    def cold(key: str) -> None:
        check_cache.clear()
        authenticate_key(key)

    # Warm-up of the connection and PostgreSQL's buffers, not measured.
    for key in sample[:500]:
        baseline(key)
        cold(key)
    reset_last_used(timezone.now())

    results = [summary("baseline (old SQL per call)", timed(baseline, sample))]
    reset_last_used(timezone.now())
    results.append(summary("cold (last used < 1 min ago)", timed(cold, sample)))
    last_used.background = False  # written here, timed, below
    reset_last_used(timezone.now() - timezone.timedelta(minutes=5))
    results.append(summary("cold, first use in a minute", timed(cold, sample)))
    last_used.write_pending()
    reset_last_used(timezone.now() - timezone.timedelta(minutes=5))
    with_write: list[float] = []
    for start in range(0, len(sample), 100):
        chunk = timed(cold, sample[start : start + 100])
        began = time.perf_counter()
        last_used.write_pending()
        share = (time.perf_counter() - began) / len(chunk)
        with_write += [seconds + share for seconds in chunk]
    results.append(summary("… + batched write", with_write))

    settings.HOTCROSS_KEY_CACHE_SECONDS = 1.0
    hot = sample[:1000]
    check_cache.clear()
    for key in hot:
        authenticate_key(key)
    warm_items = [hot[i % len(hot)] for i in range(args.warm_calls)]
    # Keep every check inside the one-second window: refresh the memory between rounds, outside the timing.
    warm_samples: list[float] = []
    for start in range(0, len(warm_items), 20_000):
        for key in hot:
            authenticate_key(key)
        warm_samples += timed(authenticate_key, warm_items[start : start + 20_000])
    results.append(summary("warm (≤ 1 s memory)", warm_samples))

    base = results[0]["rate"]
    print(f"\n{'variant':<32} {'checks/s':>12} {'p50 µs':>10} {'p99 µs':>10} {'× baseline':>11}")
    for r in results:
        print(f"{r['name']:<32} {r['rate']:>12,.0f} {r['p50']:>10.1f} {r['p99']:>10.1f} {r['rate'] / base:>10.1f}×")
    print(
        f"\ntargets: warm ≥ 20× → {results[4]['rate'] / base:.1f}×; cold ≥ 2.5× → {results[1]['rate'] / base:.1f}×; "
        f"first use in a minute ≥ 2.5× → {results[2]['rate'] / base:.1f}× "
        f"({results[3]['rate'] / base:.1f}× with its share of the batched write)"
    )


def main() -> None:
    check_benchmark(__doc__, SCRATCH_DB, run, calls=5_000, warm_calls=200_000)


if __name__ == "__main__":
    main()
