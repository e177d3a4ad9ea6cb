import pytest
from django.db import connection

from accounts import key_cache, last_used


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    """Each test starts with an empty key-check memory."""
    key_cache.clear()
    yield
    key_cache.clear()


@pytest.fixture(autouse=True)
def _last_used_written_on_demand():
    """Key checks' last-used notes wait for the test to write them (`last_used.write_pending()`): no background thread
    writing into a test's transaction. `tests/scale/test_last_used.py` turns the thread on where it tests it."""
    last_used.background = False
    last_used.clear()
    yield
    last_used.clear()
    last_used.background = False


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://…)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)
