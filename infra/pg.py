"""PostgreSQL connection options (psycopg 3 / libpq) for `settings.DATABASES`: the pool, and how soon a database that
stops answering is noticed.

A refused connection fails at once; a database behind a network that drops packets (no RST) would otherwise hold a
request for as long as TCP keeps retrying (minutes). So:

- `connect_timeout`: a new connection gives up after this many seconds (libpq; at least 2).
- TCP keepalives: an idle connection whose peer vanished is noticed within about
  `KEEPALIVES_IDLE + KEEPALIVES_INTERVAL × KEEPALIVES_COUNT` seconds.
- `tcp_user_timeout`: data sent (a query) that stays unacknowledged this long breaks the connection (Linux).
- The pool's `timeout`: how long a request waits for a pooled connection (then psycopg_pool's `PoolTimeout`, which
  `hotcross.middleware` answers 503).
- The pool's `reconnect_timeout` (the settings make it as long as its `timeout`): psycopg_pool tries again a
  connection it could not make with a backoff that doubles (1, 2, 4, 8, 16 s…) for `reconnect_timeout`, and grows
  the pool one attempt at a time, so with its default (5 minutes) a database back after half a minute of outage was
  found only at the next attempt, ~30 s later. Here an attempt gives up within seconds and the next request that
  needs a connection starts a fresh one: a database that is back is used again within about `connect_timeout`.

How long a query may take once sent is bounded on the client by `infra.db.bound_queries` (`DATABASE_QUERY_TIMEOUT`,
in the servers only: migrations and commands may run long statements).

Pure: imports no Django, so `settings.py` can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KEEPALIVES_IDLE = 5  # seconds of silence before the first probe
KEEPALIVES_INTERVAL = 2  # seconds between probes
KEEPALIVES_COUNT = 3  # unanswered probes before the connection is dropped
TCP_USER_TIMEOUT_MS = 10_000  # unacknowledged data for this long breaks the connection
MIN_CONNECT_TIMEOUT = 2  # libpq treats 1 as 2 (and 0 as "wait forever", which is what this module is against)
MIN_RECONNECT_TIMEOUT = 1.0  # seconds the pool keeps trying a connection it could not make (see the module)


def connection_options(
    given: Mapping[str, Any] | None = None,
    *,
    connect_timeout: float,
    pool_min_size: int,
    pool_max_size: int,
    pool_timeout: float,
    prepared_statements: bool,
    reconnect_timeout: float | None = None,
) -> dict[str, Any]:
    """`DATABASES["default"]["OPTIONS"]` for PostgreSQL: the options of `given` (e.g. from DATABASE_URL's query
    string), with the pool set and the timeouts above added where `given` does not set them."""
    options: dict[str, Any] = {
        "connect_timeout": max(MIN_CONNECT_TIMEOUT, round(connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": KEEPALIVES_IDLE,
        "keepalives_interval": KEEPALIVES_INTERVAL,
        "keepalives_count": KEEPALIVES_COUNT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    }
    # The key check (accounts.authentication) runs as a prepared statement once a connection has run it this many
    # times; Django's own queries are never prepared. Off behind a pooler that cannot keep prepared statements.
    if prepared_statements:
        options["prepare_threshold"] = 5
    options.update(given or {})
    options["pool"] = {"min_size": pool_min_size, "max_size": pool_max_size, "timeout": pool_timeout}
    if reconnect_timeout is not None:
        options["pool"]["reconnect_timeout"] = max(MIN_RECONNECT_TIMEOUT, reconnect_timeout)
    return options
