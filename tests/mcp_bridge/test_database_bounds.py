"""How soon the servers give up on a database that does not answer (infra.pg, infra.db.bound_queries). The
black-holed database itself is in test_outage.py; here the bounds one by one."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection, transaction

from infra import pg
from infra.db import bound_queries, query_timeout


def test_postgres_options_bound_connecting_and_dead_connections_and_keep_what_the_url_says():
    options = pg.connection_options(
        {"sslmode": "require", "connect_timeout": 7},
        connect_timeout=3,
        pool_min_size=1,
        pool_max_size=4,
        pool_timeout=5,
        prepared_statements=False,
    )
    assert options["sslmode"] == "require"
    assert options["connect_timeout"] == 7  # the URL's own value wins
    assert options["keepalives"] == 1
    assert options["tcp_user_timeout"] == 10_000
    assert "prepare_threshold" not in options
    assert options["pool"] == {"min_size": 1, "max_size": 4, "timeout": 5}
    # libpq reads 0 as "wait forever" and 1 as 2.
    assert pg.connection_options(connect_timeout=0.2, **_pool())["connect_timeout"] == 2
    assert pg.connection_options(connect_timeout=3, **_pool())["prepare_threshold"] == 5


def _pool() -> dict:
    return {"pool_min_size": 1, "pool_max_size": 2, "pool_timeout": 1, "prepared_statements": True}


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_query_unanswered_within_the_bound_fails_fast_and_the_next_query_works():
    bound_queries(0.5)
    try:
        assert query_timeout() == 0.5
        connection.close()  # the bound applies from the next connection on
        started = time.monotonic()
        with pytest.raises(OperationalError, match=r"did not answer within 0\.5 s"):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 2
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        # In a transaction a statement may wait (for a lock) longer: not bounded.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.8)")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.1)")  # well within the bound
    finally:
        bound_queries(0)
        connection.close()
    assert query_timeout() == 0
