"""The legacy conversion's report (`orgs legacy-report`, which writes nothing, even on the old system's database) and
its progress, shown on a terminal only (the conversion itself: `test_legacy_migration.py`)."""

from __future__ import annotations

import io
import json
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accounts.models import Developer, Organization
from tests.support.legacy import (
    BEFORE,
    CONVERSION,
    customer,
    insert_customers,
    migrate,
    migrate_forward,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_legacy_report_prints_the_plan_without_writing(legacy_table):
    insert_customers(
        customer(email="a@x.test", stripe_customer_id="cus_team", subscription_status="active"),
        customer(email="b@x.test", stripe_customer_id="cus_team", subscription_status="past_due"),
        customer(email="c@x.test"),
    )
    migrate(BEFORE)

    out = io.StringIO()
    call_command("orgs", "legacy-report", stdout=out)

    text = out.getvalue()
    assert "Customers found:               3" in text
    assert "Organizations to create:       2" in text
    assert "Developers to create:          3" in text
    assert "cus_team: 2 customers → one organization (active, 2 seats)" in text
    assert "No problems" in text
    assert Organization.objects.count() == 0 and Developer.objects.count() == 0

    out = io.StringIO()
    call_command("orgs", "legacy-report", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["merges"][0]["stripe_customer_id"] == "cus_team"
    assert report["merges"][0]["customers"] == 2
    assert report["problems"] == []
    migrate_forward()


def test_legacy_report_works_on_the_old_database_before_hotcross_has_any_table(legacy_table):
    """The report is for before anyone migrates: on the old system's database Hotcross's tables do not exist yet."""
    insert_customers(
        customer(email=" Ann@X.test", company="Acme", subscription_status=" Active"),
        customer(email="ann@x.test", subscription_status="gold"),
    )
    migrate(BEFORE)
    hidden = {table: f"{table}_hidden" for table in (Developer._meta.db_table, Organization._meta.db_table)}
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, renamed in hidden.items():
            cursor.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote(renamed)}")
    try:
        out = io.StringIO()
        with pytest.raises(CommandError, match="2 customer"):
            call_command("orgs", "legacy-report", "--json", stdout=out)
    finally:
        with connection.cursor() as cursor:
            for table, renamed in hidden.items():
                cursor.execute(f"ALTER TABLE {quote(renamed)} RENAME TO {quote(table)}")
    report = json.loads(out.getvalue())
    assert report["customers"] == 2 and report["developers_to_create"] == 2
    assert {p["code"] for p in report["problems"]} == {"duplicate_email", "invalid_status"}
    migrate_forward_refused = pytest.raises(CommandError, match="stopped before writing anything")
    with migrate_forward_refused:
        migrate(CONVERSION)
    assert Developer.objects.count() == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only(legacy_table, monkeypatch):
    from accounts import legacy

    monkeypatch.setattr(legacy, "PROGRESS_THRESHOLD", 3)
    insert_customers(customer(), customer(), customer())
    migrate(BEFORE)
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stdout", piped)
    migrate(CONVERSION)
    assert piped.getvalue() == ""

    migrate(BEFORE)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    migrate(CONVERSION)
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)

    shown = terminal.getvalue()
    assert "legacy conversion: 3 customers" in shown
    assert "3 organizations created" in shown
    assert "3 developers created" in shown
