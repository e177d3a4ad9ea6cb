"""Giving a worker thread's database connections back.

Django opens a connection per thread and closes it only at request boundaries, which worker threads (asgiref's, the
MCP bridge's pools) never see. A worker that kept its connection would hold it, and on PostgreSQL a slot of the
connection pool, for as long as the thread lives; after an outage it would keep a broken one forever. Work done on
such threads ends with `close_thread_connections()`.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)


def close_thread_connections() -> None:
    """Close (with the pool: give back) every database connection this thread opened."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except DatabaseError:
            # Closing a connection that an outage broke can fail; the pool discards it either way.
            logger.debug("closing a broken database connection failed", exc_info=True)
