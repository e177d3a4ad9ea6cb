"""What the benchmarks share: the server argument, a scratch PostgreSQL database made and dropped around a run, the
bulk loader of organizations and developers, timing one call at a time with its summary (checks/s, p50, p99) and
percentiles, and the servers they start (uvicorn, or a command that binds its port itself) through the tests' one
launcher of real servers, `tests/support/servers.py`: a listening socket of the server's own with TCP_NODELAY (no
port races, no Nagle delay), readiness by polling, stop by process, the output in a log file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import servers  # noqa: E402  (plain modules: no pytest, no Django set up)

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


# A server is up once /mcp gives any HTTP answer (the bridge asks for a key; a bare server or an upstream answers too).
ANSWERS = servers.answers("/mcp", status=None)


@functools.cache
def server_logs() -> Path:
    """Where the servers of this run write their output (a new temporary folder, said on stderr once and kept): a
    server that does not start raises with its log."""
    folder = Path(tempfile.mkdtemp(prefix="hotcross-bench-"))
    print(f"server logs: {folder}", file=sys.stderr, flush=True)
    return folder


@contextlib.contextmanager
def uvicorn(
    app: str, env: dict[str, str], *, workers: int = 1, args: Sequence[str] = ()
) -> Iterator[servers.RunningServer]:
    """uvicorn serving `app` from the checkout (`tests.support.servers.uvicorn`: no access log, log level warning, a
    backlog of 1024), `workers` processes, `env` its whole environment and `args` more options; yields once /mcp
    answers, and stops it (SIGTERM) at the end unless the caller did (`server.stop()`)."""
    with servers.uvicorn(server_logs(), env, app=app, workers=workers, args=args, ready=ANSWERS) as server:
        yield server


@contextlib.contextmanager
def serve_command(command: Sequence[str], env: dict[str, str] | None = None) -> Iterator[servers.RunningServer]:
    """A server that binds its port itself (`{port}` in `command`; `tests.support.servers.serve_command`, this
    environment plus `env`); yields once /mcp answers, stopped at the end."""
    with servers.serve_command(command, server_logs(), env=env, ready=ANSWERS) as server:
        yield server


def create_database_if_missing(connection) -> None:
    """`migrate` needs the database to exist: create a missing PostgreSQL one (SQLite creates its own file)."""
    if connection.vendor != "postgresql":
        return
    name = connection.settings_dict["NAME"]
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            print(f"creating database {name} (first run: migrating takes a minute or two)")
            cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")


async def mcp_calls(port: int, headers: dict[str, str], *, clients: int, calls: int) -> tuple[float, float, float]:
    """`clients` tools/call of `ping` in flight at /mcp (httpx), `calls` in all: (calls per second, p50, p99 ms)."""
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


def bench_server(stack: contextlib.ExitStack, app: str, *args: str, **extra_env: str) -> servers.RunningServer:
    """uvicorn serving `app` (with `args`, e.g. `--factory`), one worker, this process's environment plus the bench
    folder (its tool modules and apps) on PYTHONPATH and `extra_env`; stopped when `stack` closes."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)]),
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    return stack.enter_context(uvicorn(app, env, args=args))
