"""What the benchmarks share: the server argument, a scratch PostgreSQL database made and dropped around a run, the
bulk loader of organizations and developers, and percentiles."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with `--server` (the PostgreSQL server, no database) and `--keep` (the scratch database)."""
    parsed = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL, without a database")
    parsed.add_argument("--keep", action="store_true", help="keep the scratch database")
    return parsed


def admin_sql(server: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def scratch_database(server: str, name: str, *, keep: bool = False, **env: str) -> Iterator[None]:
    """A new database `name` on `server` that Django (set up here, with `env` in the environment) uses; closed and
    dropped at the end unless `keep`."""
    admin_sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin_sql(server, f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = f"{server}/{name}"
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotcross.settings")
    os.environ.update(env)
    import django

    django.setup()
    try:
        yield
    finally:
        from django.db import connections

        connections.close_all()
        for conn in connections.all():
            if getattr(conn, "pool", None) is not None:
                conn.close_pool()
        if not keep:
            admin_sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load_developers(
    organizations: int,
    developers_each: int,
    now: datetime.datetime,
    *,
    organization: Callable[[int], dict[str, Any]] = lambda i: {},
    developer: Callable[[int], dict[str, Any]] = lambda i: {},
) -> tuple[list[Any], list[Any], list[str]]:
    """`organizations` active organizations with `developers_each` seat-holding developers each, every one with a key;
    `organization(i)` and `developer(i)` give per-row changes. Returns the organizations, the developers and the
    developers' plain keys (in the same order)."""
    from accounts import keys
    from accounts.models import Developer, Organization

    orgs = [
        Organization(
            **{
                "id": uuid.uuid4(),
                "name": f"Org {i:05d}",
                "stripe_customer_id": f"cus_{i:08d}",
                "subscription_status": "active",
                "max_seats": developers_each,
                "created_at": now,
                **organization(i),
            }
        )
        for i in range(organizations)
    ]
    Organization.objects.bulk_create(orgs, batch_size=5_000)
    plain_keys = [keys.generate_key() for _ in range(organizations * developers_each)]
    developers = [
        Developer(
            **{
                "id": uuid.uuid4(),
                "organization": orgs[i // developers_each],
                "email": f"dev{i}@example.com",
                "api_key_hash": keys.hash_key(key),
                "api_key_prefix": keys.display_prefix(key),
                "api_key_created_at": now,
                "seat_claimed_at": now,
                "created_at": now,
                "api_key_last_used_at": now,
                **developer(i),
            }
        )
        for i, key in enumerate(plain_keys)
    ]
    Developer.objects.bulk_create(developers, batch_size=5_000)
    return orgs, developers, plain_keys


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted samples (`fraction` 0.95 for p95)."""
    return ordered[max(0, math.ceil(len(ordered) * fraction) - 1)]
