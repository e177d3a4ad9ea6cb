"""Fixtures of the accounts tests."""

import pytest

from tests.support.legacy import create_customers_table, drop_customers_table, migrate


@pytest.fixture
def legacy_table():
    """A `customers` table; afterwards the table is gone and the database fully migrated again."""
    create_customers_table()
    yield
    drop_customers_table()
    migrate()
