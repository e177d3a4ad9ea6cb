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

Bounded queries. A database behind a network that drops packets answers nothing and refuses nothing: a query would
wait for as long as TCP retries. The servers call `bound_queries(DATABASE_QUERY_TIMEOUT)` at start: from then on a
PostgreSQL query made through Django that has no answer after that many seconds has its connection shut down under
it (by one watchdog thread), so it fails with `OperationalError` (→ `DatabaseUnavailable`, HTTP 503 / MCP -32002) and
the pool drops that connection; a Django view meeting it answers 503 with Retry-After (`hotcross.middleware`).
Statements on the async connection get the same bound, and so do statements inside a transaction, except those that
wait on purpose (`SELECT … FOR UPDATE/SHARE`, `pg_advisory_lock`/`pg_advisory_xact_lock`, `LOCK TABLE`: the seat
rules, per-customer turns; `pg_sleep`): such a statement may rightly wait longer than the bound, so it is not cut;
when it would open its transaction, the transaction is opened first with a bounded `SELECT 1`, so a database that
does not answer is still noticed within the bound. Not bounded: commands and migrations (a data migration may rightly
run for minutes); for those, `infra.pg`'s connect timeout, TCP keepalives and `tcp_user_timeout` still end a
connection to a database that vanished.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import itertools
import logging
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, ParamSpec, TypeVar

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

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


def is_database_outage(exc: BaseException | None) -> bool:
    """Whether `exc` says the database could not be reached or did not answer (the client may try again), rather
    than a mistake in a query."""
    if exc is None:
        return False
    # psycopg's own errors where Django did not wrap them (psycopg_pool's PoolTimeout is one); Django's InterfaceError
    # for a connection already closed (one a bound cut, say).
    return isinstance(exc, DatabaseUnavailable | OperationalError | InterfaceError | psycopg.OperationalError)


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


class SharedReads(Generic[T]):
    """Concurrent reads of the same thing share one: while `fn(key)` runs on a thread of `pool` for a key, other
    callers on the same event loop asking for that key wait for its result (or its exception) instead of each asking
    the database. The cold key and token checks use one each, so a burst of requests with one credential costs one
    query. A caller that is cancelled does not cancel the read the others wait for.
    """

    def __init__(self, pool: str, fn: Callable[[str], T]) -> None:
        self._pool = pool
        self._fn = fn
        self._in_flight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[T]]] = (
            weakref.WeakKeyDictionary()
        )

    async def read(self, key: str) -> T:
        """`fn(key)`, run once for every caller asking for `key` while it runs. Raises what `run_in_pool` raises."""
        in_flight = self._in_flight.setdefault(asyncio.get_running_loop(), {})
        running = in_flight.get(key)
        if running is None:
            running = in_flight[key] = asyncio.ensure_future(run_in_pool(self._pool, self._fn, key))
            running.add_done_callback(lambda _done: in_flight.pop(key, None))
        return await asyncio.shield(running)

    def running(self) -> int:
        """How many reads are under way on this thread's event loop (for tests)."""
        try:
            return len(self._in_flight.get(asyncio.get_running_loop(), {}))
        except RuntimeError:
            return 0


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


# --- bounded queries ------------------------------------------------------------------------------------------------

_query_timeout: float = 0.0  # seconds; 0 = unbounded (the default outside the servers)


def bound_queries(seconds: float) -> None:
    """From now on, in this process, a PostgreSQL query made through Django (but a deliberate lock wait, see the
    module) and a statement on the async connection that has no answer after `seconds` fail with `OperationalError`;
    0 or less: unbounded. For servers, at start."""
    global _query_timeout
    _query_timeout = max(0.0, float(seconds))
    if _query_timeout:
        connection_created.connect(_bound_connection, weak=False, dispatch_uid="infra.db.bound_queries")
    else:
        connection_created.disconnect(dispatch_uid="infra.db.bound_queries")


def query_timeout() -> float:
    """The bound `bound_queries` set (0: none)."""
    return _query_timeout


def _bound_connection(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # Sent at every connect (with the pool: every checkout) of every thread's connection object.
    if connection.vendor == "postgresql" and _bounded_execute not in connection.execute_wrappers:
        connection.execute_wrappers.append(_bounded_execute)


# Statements that wait on purpose (for a lock; or asleep), and may rightly wait longer than the bound.
_WAITS_FOR_LOCK = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b"
    r"|\bpg_advisory(?:_xact)?_lock(?:_shared)?\s*\("
    r"|\bLOCK\s+TABLE\b"
    r"|\bpg_sleep(?:_for|_until)?\s*\(",
    re.IGNORECASE,
)


def _bounded_execute(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    seconds = _query_timeout
    wrapper = context["connection"]
    if not seconds or wrapper.connection is None:
        return execute(sql, params, many, context)
    if wrapper.in_atomic_block and isinstance(sql, str) and _WAITS_FOR_LOCK.search(sql):
        # A lock wait may last (the seat rules, per-customer turns): not cut. Its transaction is opened under the
        # bound, so a database that does not answer fails here within it; once a statement of the transaction was
        # answered, the kernel's bounds of `infra.pg` (tcp_user_timeout, keepalives) end a dead connection.
        if wrapper.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            _bounded(wrapper, seconds, lambda: wrapper.connection.execute("SELECT 1"))
        return execute(sql, params, many, context)
    return _bounded(wrapper, seconds, lambda: execute(sql, params, many, context))


def _bounded(wrapper: BaseDatabaseWrapper, seconds: float, run: Callable[[], T]) -> T:
    """`run()`, with the connection shut down under it if it has no answer after `seconds`."""
    try:
        fd = wrapper.connection.fileno()
    except psycopg.Error:  # closed already: the statement fails on its own, as Django reports it
        return run()
    ticket = _watchdog.watch(fd, seconds)
    try:
        with wrapper.wrap_database_errors:
            return run()
    except DatabaseError:
        if _watchdog.release(ticket):
            logger.warning("database query unanswered after %s s: its connection was dropped", seconds)
            raise OperationalError(f"The database did not answer within {seconds:g} s.") from None
        raise
    finally:
        _watchdog.release(ticket)


class _Watchdog:
    """One thread that shuts down the socket of a query still waiting at its deadline.

    A ticket is released by the thread that ran the query, under the same lock the watchdog holds to fire: a socket is
    only ever shut down while its query is still running, so the descriptor is still that connection's.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._deadlines: list[tuple[float, int]] = []  # (deadline, ticket), a heap
        self._waiting: dict[int, int] = {}  # ticket → socket descriptor, while its query runs
        self._fired: set[int] = set()
        self._tickets = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, fd: int, seconds: float) -> int:
        with self._lock:
            ticket = next(self._tickets)
            self._waiting[ticket] = fd
            heapq.heappush(self._deadlines, (time.monotonic() + seconds, ticket))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hotcross-query-watchdog", daemon=True)
                self._thread.start()
            elif self._deadlines[0][1] == ticket:
                self._lock.notify()
            return ticket

    def release(self, ticket: int) -> bool:
        """End the watch of `ticket`; whether its deadline had fired."""
        with self._lock:
            self._waiting.pop(ticket, None)
            if ticket in self._fired:
                self._fired.discard(ticket)
                return True
            return False

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                while self._deadlines and (self._deadlines[0][1] not in self._waiting or self._deadlines[0][0] <= now):
                    _, ticket = heapq.heappop(self._deadlines)
                    fd = self._waiting.pop(ticket, None)
                    if fd is not None:
                        self._fired.add(ticket)
                        _shut_down(fd)
                self._lock.wait(self._deadlines[0][0] - now if self._deadlines else None)


def _shut_down(fd: int) -> None:
    """Shut the socket down (the query waiting on it fails at once); its descriptor stays its connection's."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()  # the descriptor belongs to the connection: do not close it here


_watchdog = _Watchdog()


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
                async with asyncio.timeout(_query_timeout or None):
                    connection = await self._connect()
                    await connection.execute(sql, params)
            except psycopg.IntegrityError as exc:
                raise IntegrityError(*exc.args) from exc
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                await self.discard()
                raise OperationalError(*exc.args) from exc
            except TimeoutError:
                await self.discard()
                raise OperationalError(f"The database did not answer within {_query_timeout:g} s.") from None

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
