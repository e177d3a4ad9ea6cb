"""What the benchmarks share: the server argument, a scratch PostgreSQL database made and dropped around a run, the
bulk loader of organizations and developers, timing one call at a time with its summary (checks/s, p50, p99) and
percentiles, and starting a uvicorn on a port of its own and waiting until it answers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
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


def check_benchmark(
    doc: str, database: str, run: Callable[[argparse.Namespace], None], *, calls: int, warm_calls: int
) -> None:
    """A check benchmark's `main`: `--server`, `--keep`, `--calls` (database-bound checks per variant) and
    `--warm-calls`, then `run(args)` in the scratch database `database`."""
    arguments = parser(doc)
    arguments.add_argument("--calls", type=int, default=calls, help="database-bound checks per variant")
    arguments.add_argument("--warm-calls", type=int, default=warm_calls)
    args = arguments.parse_args()
    with scratch_database(args.server, database, keep=args.keep):
        run(args)


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


def timed(fn: Callable[[Any], object], items: Iterable[Any]) -> list[float]:
    """Seconds each `fn(item)` took, one call at a time."""
    out = []
    clock = time.perf_counter
    for item in items:
        start = clock()
        fn(item)
        out.append(clock() - start)
    return out


def summary(name: str, samples: list[float]) -> dict[str, Any]:
    """`name`, the rate (calls per second of the samples' total time), and p50 and p99 in microseconds."""
    ordered = sorted(samples)
    return {
        "name": name,
        "rate": len(samples) / sum(samples),
        "p50": statistics.median(ordered) * 1e6,
        "p99": percentile(ordered, 0.99) * 1e6,
    }


def start_uvicorn(arguments: Sequence[str], env: dict[str, str]) -> tuple[int, subprocess.Popen]:
    """`uvicorn <arguments>` (the app, and options such as `--workers`) on a free 127.0.0.1 port of its own, with
    `env` as its environment, from the checkout; returns once `/mcp` answers. The caller stops the process.

    A port of its own rather than a socket handed over with --fd: asyncio sets TCP_NODELAY only on sockets it knows
    to be TCP, and without it Nagle's algorithm and delayed ACKs add ~40 ms to every answer."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", *arguments),
            *("--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"),
            *("--backlog", "1024"),
        ],
        env=env,
        cwd=ROOT,
    )
    asyncio.run(wait_for_server(port))
    return port, process


async def wait_for_server(port: int) -> None:
    """Return once something answers HTTP on 127.0.0.1:`port`/mcp (within a minute), or exit the benchmark."""
    import httpx2

    async with httpx2.AsyncClient() as http:
        for _ in range(300):
            try:
                await http.post(f"http://127.0.0.1:{port}/mcp", json={})
                return
            except httpx2.TransportError:
                await asyncio.sleep(0.2)
    raise SystemExit(f"the server on port {port} did not start")
