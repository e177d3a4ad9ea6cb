import pytest
from django.db import connection

from accounts import key_cache


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    """Each test starts with an empty key-check memory."""
    key_cache.clear()
    yield
    key_cache.clear()


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://…)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)
