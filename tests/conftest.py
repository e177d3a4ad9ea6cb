"""The suite's own plugin: the migration executor that remembers states, how pytest-xdist shares the work, which
tests run on one database only, the test database's tuning, a Redis server per session, and per-test resets.
docs/testing.md says how the suite is laid out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from accounts import check_cache, last_used
from tests.support import database, migrations, templates

# Fixtures every folder may use, defined once here: a session fixture imported into several conftest files would be
# one fixture per file to pytest, each starting its own server.
from tests.support.mcp import db_proxy, mcp_http  # noqa: F401 - fixtures
from tests.support.oauth import oauth_server  # noqa: F401 - fixtures
from tests.support.redis import RedisService, redis_server
from tests.support.stripe import stripe_stub, webhook  # noqa: F401 - fixtures
from tests.support.upstreams import everything_upstream, gateway_bridge, old_hotcross_upstream  # noqa: F401 - fixtures


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="leave out the tests that never touch the run's database (CI runs them on its first database only)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # The test database is created by `migrate` on the executor that remembers project states: a rollback in a
    # migration test then finds the states it needs (tests/support/migrations.py).
    migrations.use_in_migrate_command()
    # Emptying the database after a transactional test deletes the rows of the tables that have some (PostgreSQL).
    database.use_fast_flush()
    # A test database is cloned from its template when `python -m tests.support.templates` built one (.ci/run does).
    templates.use_templates()


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from tests.support.scheduling import GroupedFileScheduling

    return GroupedFileScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("database_tests_only"):
        kept = [item for item in items if database.uses_database(item)]
        left_out = [item for item in items if not database.uses_database(item)]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = kept
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://…)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    database.current_item = item
    try:
        return (yield)
    finally:
        database.current_item = None


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
