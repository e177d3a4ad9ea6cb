"""One psycopg `AsyncConnection` per event loop, for the writes async code makes often on PostgreSQL (usage events).

Django's ORM is synchronous: from async code it runs in a worker thread, and on a busy MCP server the hand-off to
the thread and the GIL it then holds stall the event loop more than the INSERT itself costs. psycopg's own async API
does the same work on the event loop without blocking it. This module only holds the connection: what is written,
and its rules, stay in `accounts.services`.

The connection uses Django's connection parameters (the same database, the test database in tests, Django's type
adapters) in autocommit. A connection-level failure closes it and raises Django's `OperationalError`, as the ORM
would; the next call connects again, so an outage heals without a restart.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, OperationalError, connections

_connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnection] = weakref.WeakKeyDictionary()


def available(alias: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether this database is PostgreSQL (where the async path is used; elsewhere callers use a thread).

    Read from the settings: in async code every task has its own `connections[alias]`, and making one costs more
    than the INSERT it would describe.
    """
    return settings.DATABASES[alias]["ENGINE"] == "django.db.backends.postgresql"


async def execute(sql: str, params: Sequence[Any], alias: str = DEFAULT_DB_ALIAS) -> None:
    """Run one statement (autocommit: it is its own transaction; one round trip).

    Raises Django's `IntegrityError` (nothing written) or `OperationalError` (the database cannot be reached).
    """
    loop = asyncio.get_running_loop()
    holder = _connections.get(loop)
    if holder is None or holder.alias != alias:
        holder = _connections[loop] = _LoopConnection(alias)
    await holder.execute(sql, params)


async def close() -> None:
    """Close the running event loop's connection (a stopping server; the next `execute` would connect again)."""
    holder = _connections.pop(asyncio.get_running_loop(), None)
    if holder is not None:
        async with holder._lock:
            await holder._discard()


class _LoopConnection:
    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._connection: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on one connection

    async def execute(self, sql: str, params: Sequence[Any]) -> None:
        async with self._lock:
            try:
                connection = await self._connect()
                await connection.execute(sql, params)
            except psycopg.IntegrityError as exc:
                raise IntegrityError(*exc.args) from exc
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                await self._discard()
                raise OperationalError(*exc.args) from exc

    async def _connect(self) -> psycopg.AsyncConnection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        params = connections[self.alias].get_connection_params()
        params.pop("cursor_factory", None)  # Django's is a synchronous cursor class
        params.setdefault("connect_timeout", 5)
        self._connection = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        return self._connection

    async def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except psycopg.Error:
                pass  # it is broken already; dropping it is all that matters
