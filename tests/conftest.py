"""Fixtures every folder may use, defined once here (a session fixture imported into several conftest files would be
one fixture per file to pytest, each starting its own server), and the per-test resets of per-process memories. The
suite's hooks are its plugin, tests/support/plugin.py. docs/testing.md says how the suite is laid out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from accounts import check_cache, last_used
from tests.support import database
from tests.support.mcp import db_proxy, mcp_http  # noqa: F401 - fixtures
from tests.support.oauth import oauth_server  # noqa: F401 - fixtures
from tests.support.redis import RedisService, redis_server
from tests.support.stripe import stripe_stub, webhook  # noqa: F401 - fixtures
from tests.support.upstreams import (  # noqa: F401 - fixtures
    conformance_upstream,
    everything_upstream,
    gateway_bridge,
    old_hotcross_upstream,
)

pytest_plugins = ("tests.support.plugin",)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker) -> Iterator[None]:
    """pytest-django's test database, with PostgreSQL's commits not waiting for the WAL (tests/support/database.py)."""
    with django_db_blocker.unblock():
        database.tune_postgresql(connection)
    yield


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisService]:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as service:
        yield service


@pytest.fixture
def redis_service(_redis_server: RedisService) -> RedisService:
    """A Redis server of this session's (worker's) own, emptied for this test (tests/support/redis.py)."""
    _redis_server.flush()
    return _redis_server


@pytest.fixture(autouse=True)
def _fresh_check_cache():
    """Each test starts with an empty credential-check memory (`accounts.check_cache`)."""
    check_cache.clear()
    yield
    check_cache.clear()


@pytest.fixture(autouse=True)
def _last_used_written_on_demand():
    """Key checks' last-used notes wait for the test to write them (`last_used.write_pending()`): no background thread
    writing into a test's transaction. `tests/scale/test_last_used.py` turns the thread on where it tests it."""
    last_used.background = False
    last_used.clear()
    yield
    last_used.clear()
    last_used.background = False
