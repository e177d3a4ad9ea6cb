"""Database connection helpers shared by the project: worker threads that give their connections back, and one
psycopg `AsyncConnection` per event loop for the writes async code makes often on PostgreSQL.

Worker threads. Django opens a connection per thread and closes it only at request boundaries, which worker threads
never see. A worker that kept its connection would hold it, and on PostgreSQL a slot of the connection pool, for as
long as the thread lives; after an outage it would keep a broken one forever. So async code hands database work to
small named thread pools (`run_in_pool`), and each unit of work ends with `close_thread_connections()`. There are two
pools of `HOTCROSS_MCP_DB_THREADS` threads each: `TOOLS` (MCP tools, which may be slow) and `BOOKKEEPING` (key
checks and usage events, a few milliseconds each), so slow tools can never hold up the key check of other requests.

The async PostgreSQL connection. Django's ORM is synchronous: from async code it runs in a worker thread, and on a
busy server the hand-off to the thread and the GIL it then holds stall the event loop more than a small INSERT costs.
psycopg's own async API does the same work on the event loop without blocking it. The connection uses Django's
connection parameters (the same database, the test database in tests) in autocommit. A connection-level failure
closes it and raises Django's `OperationalError`, as the ORM would; the next call connects again.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

TOOLS = "tools"
BOOKKEEPING = "bookkeeping"


class DatabaseUnavailable(Exception):
    """The database could not be reached (down, restarting, pool exhausted). The client may try again."""

    message = "Hotcross cannot reach its database right now. Nothing was done; please try again in a moment."

    def __str__(self) -> str:
        return self.message


# --- worker threads ---------------------------------------------------------------------------------------------------


def close_thread_connections() -> None:
    """Close (with the pool: give back) every database connection this thread opened."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except DatabaseError:
            # Closing a connection that an outage broke can fail; the pool discards it either way.
            logger.debug("closing a broken database connection failed", exc_info=True)


async def run_in_pool(pool: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on a thread of `pool` (`TOOLS` or `BOOKKEEPING`) and return its result.

    Context variables are visible inside `fn`, and the thread's connections are given back afterwards.
    Connection-level database errors become `DatabaseUnavailable`; everything else propagates unchanged.
    """
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


_executors: dict[str, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _executor(pool: str) -> ThreadPoolExecutor:
    executor = _executors.get(pool)
    if executor is None:
        with _executors_lock:
            executor = _executors.get(pool)
            if executor is None:
                executor = _executors[pool] = ThreadPoolExecutor(
                    max_workers=threads_per_pool(), thread_name_prefix=f"hotcross-{pool}"
                )
    return executor


def threads_per_pool() -> int:
    return max(1, int(settings.HOTCROSS_MCP_DB_THREADS))


def connections_at_most() -> int:
    """How many pooled database connections the worker threads can hold at once in one process (both pools busy)."""
    return 2 * threads_per_pool()


# --- the async PostgreSQL connection ----------------------------------------------------------------------------------


def async_available(alias: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether this database is PostgreSQL, where `aexecute` works (elsewhere callers use a worker thread).

    Read from the settings: in async code every task has its own `connections[alias]`, and making one costs more
    than the INSERT it would describe.
    """
    return settings.DATABASES[alias]["ENGINE"] == "django.db.backends.postgresql"


async def aexecute(sql: str, params: Sequence[Any], alias: str = DEFAULT_DB_ALIAS) -> None:
    """Run one statement on the running event loop's connection (autocommit: its own transaction; one round trip).

    Raises Django's `IntegrityError` (nothing written) or `OperationalError` (the database cannot be reached).
    """
    loop = asyncio.get_running_loop()
    holder = _loop_connections.get(loop)
    if holder is None or holder.alias != alias:
        holder = _loop_connections[loop] = _LoopConnection(alias)
    await holder.execute(sql, params)


async def aclose() -> None:
    """Close the running event loop's connection (a stopping server; the next `aexecute` would connect again)."""
    holder = _loop_connections.pop(asyncio.get_running_loop(), None)
    if holder is not None:
        async with holder.lock:
            await holder.discard()


class _LoopConnection:
    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._connection: psycopg.AsyncConnection | None = None
        self.lock = asyncio.Lock()  # one statement at a time on one connection

    async def execute(self, sql: str, params: Sequence[Any]) -> None:
        async with self.lock:
            try:
                connection = await self._connect()
                await connection.execute(sql, params)
            except psycopg.IntegrityError as exc:
                raise IntegrityError(*exc.args) from exc
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                await self.discard()
                raise OperationalError(*exc.args) from exc

    async def _connect(self) -> psycopg.AsyncConnection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        params = connections[self.alias].get_connection_params()
        params.pop("cursor_factory", None)  # Django's is a synchronous cursor class
        params.setdefault("connect_timeout", 5)
        self._connection = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        return self._connection

    async def discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except psycopg.Error:
                pass  # it is broken already; dropping it is all that matters


_loop_connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnection] = weakref.WeakKeyDictionary()
