"""Database work for the MCP bridge's event loop, done in worker threads that give their connection back.

The ORM is synchronous, and Django refuses it on a thread that runs an event loop. Work therefore runs on small,
dedicated thread pools, and each unit of work closes its thread's connections when it ends. That matters twice over:

- With PostgreSQL's connection pool, a thread that kept its connection would hold one pool slot for as long as the
  thread lives; a few such threads plus a burst of calls exhaust the pool.
- After a database outage, a kept connection stays broken forever (Django only replaces connections at request
  boundaries, which these threads never see). A closed one is discarded by the pool, and the next unit of work gets
  a fresh connection as soon as the database is back.

There are two pools of `HOTCROSS_MCP_DB_THREADS` threads each: one for tools (`run`: sync tools, and whatever an
async tool hands over) and one for the bridge's own bookkeeping (`run_bookkeeping`: key checks and usage events,
a few milliseconds each). Slow tools can fill the first; the key check and metering of every other request still
get a thread at once, so one busy tool never stalls the whole server.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError

from accounts.connections import close_thread_connections

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

TOOLS = "tools"
BOOKKEEPING = "bookkeeping"
_executors: dict[str, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


class DatabaseUnavailable(Exception):
    """The database could not be reached (down, restarting, pool exhausted). The client may try again."""

    message = "Hotcross cannot reach its database right now. Nothing was done; please try again in a moment."

    def __str__(self) -> str:
        return self.message


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on a tool thread and return its result: how async tools use the ORM.

    Context variables (the caller, the MCP access token) are visible inside `fn`. Connection-level database errors
    become `DatabaseUnavailable`; everything else propagates unchanged.
    """
    return await _run_on(TOOLS, fn, *args, **kwargs)


async def run_bookkeeping(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Like `run`, on the bridge's own threads (key checks, usage events), which tools cannot keep busy."""
    return await _run_on(BOOKKEEPING, fn, *args, **kwargs)


async def _run_on(pool: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    call = functools.partial(contextvars.copy_context().run, _unit_of_work, fn, args, kwargs)
    try:
        return await asyncio.wrap_future(_executor(pool).submit(call))
    except (OperationalError, InterfaceError) as exc:
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        raise DatabaseUnavailable() from exc


def _unit_of_work(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        close_thread_connections()


def _executor(pool: str) -> ThreadPoolExecutor:
    executor = _executors.get(pool)
    if executor is None:
        with _executors_lock:
            executor = _executors.get(pool)
            if executor is None:
                executor = _executors[pool] = ThreadPoolExecutor(
                    max_workers=threads_per_pool(), thread_name_prefix=f"mcp-{pool}"
                )
    return executor


def threads_per_pool() -> int:
    return max(1, int(settings.HOTCROSS_MCP_DB_THREADS))


def connections_at_most() -> int:
    """How many database connections the bridge can hold at once in one process (both pools busy)."""
    return 2 * threads_per_pool()
