"""The suite's own machinery (tests/support/): what it relies on about the schema, and that it does what it says."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection

from accounts.models import Developer, UsageEvent
from tests.factories import DeveloperFactory, UsageEventFactory, UsageRollupFactory
from tests.support.database import KEPT_BY_FLUSH, uses_database


def django_tables_with_rows() -> list[str]:
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    quote = connection.ops.quote_name
    with_rows = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT 1 FROM {quote(table)} LIMIT 1")  # noqa: S608 - Django's table names
            if cursor.fetchone() is not None:
                with_rows.append(table)
    return with_rows


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_every_foreign_key_is_deferrable_without_an_on_delete_action():
    """The flush after a transactional test deletes table by table in one transaction (tests/support/database.py):
    right only while no foreign key is checked at once or acts on delete."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT conrelid::regclass::text, conname FROM pg_constraint
               WHERE contype = 'f' AND (NOT condeferrable OR NOT condeferred OR confdeltype <> 'a')"""
        )
        assert cursor.fetchall() == []


@pytest.mark.django_db(transaction=True)
def test_the_flush_empties_every_table():
    UsageEventFactory(developer=DeveloperFactory())
    assert Developer.objects.exists() and UsageEvent.objects.exists()
    call_command("flush", verbosity=0, interactive=False, inhibit_post_migrate=True)
    assert set(django_tables_with_rows()) <= KEPT_BY_FLUSH


@pytest.mark.django_db(transaction=True)
def test_a_flush_of_empty_tables_still_puts_the_content_types_back():
    """Django's flush runs post_migrate (content types, permissions, and its cache of content types cleared) unless it
    had nothing to flush; with every table empty there is still something to flush."""
    ContentType.objects.all().delete()
    call_command("flush", verbosity=0, interactive=False, inhibit_post_migrate=True)
    assert not ContentType.objects.exists()
    call_command("flush", verbosity=0, interactive=False)
    assert ContentType.objects.get_for_model(Developer).pk == ContentType.objects.get(model="developer").pk


@pytest.mark.django_db(transaction=True)
def test_the_flush_keeps_the_ids_of_content_types_that_servers_have_cached():
    """A server the session shares caches content type ids (the admin history it writes); Django's own flush renumbers
    them after every transactional test."""
    before = dict(ContentType.objects.values_list("model", "pk"))
    DeveloperFactory()
    call_command("flush", verbosity=0, interactive=False)
    assert dict(ContentType.objects.values_list("model", "pk")) == before
    assert not Developer.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_row_written_after_the_flush_looked_does_not_break_it():
    """A server a test started may write a row that points at a flushed row between the flush's look at which tables
    have rows and its commit (CI saw the gateway's usage flush do it): the flush still ends with every table empty."""
    from django.core.management.color import no_style
    from django.core.management.commands import flush

    developer = DeveloperFactory()
    sql_list = flush.sql_flush(no_style(), connection, reset_sequences=False)
    UsageRollupFactory(developer=developer, tool_name="search", day=datetime.date(2026, 12, 1))
    connection.ops.execute_sql_flush(sql_list)
    assert set(django_tables_with_rows()) <= KEPT_BY_FLUSH


def test_a_test_without_database_fixtures_does_not_use_the_database(request):
    assert not uses_database(request.node)


@pytest.mark.django_db
def test_a_test_with_the_db_fixture_uses_it(request):
    assert uses_database(request.node)
