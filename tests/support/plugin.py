"""The suite's own pytest plugin (hooks; registered by tests/conftest.py through `pytest_plugins`): the migration
executor that remembers states, test database templates and the fast flush, how pytest-xdist shares the work, which
tests run on one database only. docs/testing.md says how the suite is laid out."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.support import database, migrations, templates


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
