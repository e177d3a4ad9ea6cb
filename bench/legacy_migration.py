"""Benchmark: the legacy conversion of 1 000 000 customers on PostgreSQL, against the old guide's SQL.

    .venv/bin/python bench/legacy_migration.py [--customers N] [--postgres postgres://postgres@127.0.0.1:5432]

Creates two scratch databases and drops them at the end:
- one migrated by `manage.py migrate`, where `migrate accounts 0006_convert_legacy_customers` runs the conversion in a
  child process (its wall time inside the process, and its peak resident memory, are measured);
- a copy made from the same template before the conversion, where the old migration guide's two `INSERT … SELECT`
  statements run against tables shaped like the old guide's schema (the baseline, the floor for speed).

The data has every customer with an email and, like real data, NULL names, companies, statuses, Stripe ids and keys.
Stripe ids are not shared: the old guide's SQL breaks its own unique constraint on a shared id, so the baseline could
not run at all (the tests cover merges).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.5
TARGET_MB = 300

CUSTOMERS_DDL = """
CREATE TABLE customers (
    id UUID PRIMARY KEY, stripe_customer_id TEXT, email TEXT NOT NULL, first_name TEXT, last_name TEXT,
    company TEXT, subscription_status TEXT, subscription_updated_at TIMESTAMP,
    api_key_hash TEXT, api_key_prefix TEXT, api_key_created_at TIMESTAMP, api_key_revoked_at TIMESTAMP,
    api_key_last_used_at TIMESTAMP, created_at TIMESTAMP)
"""

# Deterministic rows: ~3 % without a Stripe id, ~2 % without a key, 10 % revoked, NULL and blank companies and names,
# padded and mixed-case emails and statuses.
CUSTOMERS_FILL = """
INSERT INTO customers
SELECT CAST(md5('customer' || i) AS uuid),
       CASE WHEN i %% 33 = 0 THEN NULL ELSE 'cus_' || lpad(CAST(i AS text), 10, '0') END,
       CASE WHEN i %% 17 = 0 THEN '  User' || i || '@Example.com ' ELSE 'user' || i || '@example.com' END,
       CASE WHEN i %% 20 = 0 THEN NULL ELSE 'First' || i END,
       CASE WHEN i %% 21 = 0 THEN NULL ELSE 'Last' || i END,
       CASE WHEN i %% 4 = 0 THEN NULL WHEN i %% 9 = 0 THEN '   ' ELSE 'Company ' || (i %% 50000) END,
       (ARRAY['active', ' Active', 'trialing', 'past_due', 'canceled', NULL, 'active', 'active', 'unpaid',
              'active'])[1 + i %% 10],
       timestamp '2023-01-01' + (i %% 500) * interval '1 hour',
       CASE WHEN i %% 50 = 0 THEN NULL ELSE encode(sha256(convert_to('hc_live_benchkey' || i, 'UTF8')), 'hex') END,
       CASE WHEN i %% 50 = 0 THEN NULL ELSE 'hc_live_' || substr(md5(CAST(i AS text)), 1, 4) END,
       CASE WHEN i %% 50 = 0 THEN NULL ELSE timestamp '2022-01-01' + (i %% 1000) * interval '1 day' + interval '1 hour'
       END,
       CASE WHEN i %% 10 = 0 THEN timestamp '2024-01-01' + (i %% 100) * interval '1 day' END,
       CASE WHEN i %% 3 = 0 THEN timestamp '2024-06-01' + (i %% 100) * interval '1 minute' END,
       CASE WHEN i %% 40 = 0 THEN NULL ELSE timestamp '2022-01-01' + (i %% 1000) * interval '1 day' END
FROM generate_series(1, %s) AS i
"""

# The old guide's schema (scripts/schema.sql), as far as the guide shows it.
OLD_SCHEMA = """
CREATE TABLE organizations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name TEXT NOT NULL,
    stripe_customer_id TEXT UNIQUE,
    subscription_status TEXT DEFAULT 'incomplete',
    max_seats INTEGER NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE developers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE,
    first_name TEXT,
    last_name TEXT,
    api_key_hash TEXT UNIQUE,
    api_key_prefix TEXT,
    api_key_created_at TIMESTAMPTZ,
    api_key_revoked_at TIMESTAMPTZ,
    api_key_last_used_at TIMESTAMPTZ,
    is_active BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX developers_organization_id_idx ON developers (organization_id);
CREATE INDEX developers_api_key_prefix_idx ON developers (api_key_prefix);
"""

# Verbatim from the old migration guide.
OLD_GUIDE_SQL = [
    """
INSERT INTO organizations (name, stripe_customer_id, subscription_status, max_seats)
SELECT
    COALESCE(company, email) as name,
    stripe_customer_id,
    subscription_status,
    1 as max_seats
FROM customers;
""",
    """
INSERT INTO developers (
    organization_id,
    email,
    first_name,
    last_name,
    api_key_hash,
    api_key_prefix,
    api_key_created_at,
    api_key_revoked_at,
    api_key_last_used_at
)
SELECT
    o.id as organization_id,
    c.email,
    c.first_name,
    c.last_name,
    c.api_key_hash,
    c.api_key_prefix,
    c.api_key_created_at,
    c.api_key_revoked_at,
    c.api_key_last_used_at
FROM customers c
JOIN organizations o ON c.stripe_customer_id = o.stripe_customer_id;
""",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="Server URL, no database.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child()

    tag = f"hc_bench_legacy_{os.getpid()}"
    conv_db, base_db = tag, f"{tag}_baseline"
    server = args.postgres.rstrip("/")
    admin = psycopg.connect(f"{server}/postgres", autocommit=True)
    env = {
        **os.environ,
        "DATABASE_URL": f"{server}/{conv_db}",
        "DEBUG": "true",
        "DJANGO_SETTINGS_MODULE": "hotcross.settings",
    }
    try:
        admin.execute(f'CREATE DATABASE "{conv_db}"')
        print(f"PostgreSQL: {admin.execute('SHOW server_version').fetchone()[0]}; {args.customers:,} customers")
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "migrate", "accounts", "0001_initial", "--noinput", "-v", "0")
        with psycopg.connect(f"{server}/{conv_db}", autocommit=True) as conn:
            conn.execute(CUSTOMERS_DDL)
            started = time.monotonic()
            conn.execute(CUSTOMERS_FILL, [args.customers])
            conn.execute("VACUUM ANALYZE customers")
            print(f"customers table filled in {time.monotonic() - started:.1f} s")
        admin.execute(f'CREATE DATABASE "{base_db}" TEMPLATE "{conv_db}"')

        baseline = run_baseline(f"{server}/{base_db}")
        conversion, peak_kb = run_conversion(env)

        with psycopg.connect(f"{server}/{conv_db}") as conn:
            orgs, devs, merged = conn.execute(
                "SELECT (SELECT count(*) FROM accounts_organization), (SELECT count(*) FROM accounts_developer), "
                "(SELECT count(*) FROM accounts_developer WHERE legacy_customer_id IS NOT NULL)"
            ).fetchone()
        with psycopg.connect(f"{server}/{base_db}") as conn:
            old_orgs, old_devs = conn.execute(
                "SELECT (SELECT count(*) FROM organizations), (SELECT count(*) FROM developers)"
            ).fetchone()

        ratio = conversion / baseline
        peak_mb = peak_kb / 1024
        print(
            f"baseline (old guide's two INSERT … SELECT): {baseline:7.1f} s  → {old_orgs:,} organizations, "
            f"{old_devs:,} developers ({args.customers - old_devs:,} customers lost)"
        )
        print(
            f"conversion (migrate accounts 0006):         {conversion:7.1f} s  → {orgs:,} organizations, "
            f"{devs:,} developers ({merged:,} from customers)"
        )
        print(f"ratio conversion / baseline:                {ratio:7.2f}   (target ≤ {TARGET_RATIO})")
        print(f"peak memory of the migrating process:       {peak_mb:7.1f} MB (target ≤ {TARGET_MB} MB)")
        ok = ratio <= TARGET_RATIO and peak_mb <= TARGET_MB and devs == args.customers
        print("OK" if ok else "TARGET MISSED")
        return 0 if ok else 1
    finally:
        for name in (base_db, conv_db):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def manage(env: dict[str, str], *argv: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *argv], env=env, cwd=ROOT, check=True)


def run_baseline(url: str) -> float:
    with psycopg.connect(url) as conn:
        conn.execute(OLD_SCHEMA)
        conn.commit()
        started = time.monotonic()
        for statement in OLD_GUIDE_SQL:
            conn.execute(statement)
        conn.commit()
        return time.monotonic() - started


def run_conversion(env: dict[str, str]) -> tuple[float, int]:
    """Seconds the migration took inside the child, and the child's peak resident memory in KB."""
    proc = subprocess.Popen([sys.executable, __file__, "--child"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the migration failed (exit {proc.returncode})")
    return json.loads(output.strip().splitlines()[-1])["seconds"], usage.ru_maxrss


def child() -> int:
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    started = time.monotonic()
    call_command("migrate", "accounts", "0006_convert_legacy_customers", "--noinput", verbosity=0)
    print(json.dumps({"seconds": time.monotonic() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
