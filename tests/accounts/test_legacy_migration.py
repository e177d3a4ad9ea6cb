"""The legacy conversion, driven through the real migration: forward, back, forward (PostgreSQL and SQLite). Its
report before anyone migrates, and its progress on a terminal: `test_legacy_report.py`."""

from __future__ import annotations

import datetime
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction

from accounts import authentication, keys
from accounts.exceptions import KeyRefused
from accounts.models import Developer, Organization, PricingModel, SubscriptionStatus, UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory, UsageEventFactory
from tests.support.legacy import (
    BEFORE,
    CONVERSION,
    customer,
    customers_snapshot,
    insert_customers,
    is_applied,
    migrate,
    migrate_forward,
    update_customer,
)

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime.datetime(2023, 5, 1, 9, 30)  # naive, as the legacy TIMESTAMP columns are: read as UTC
UTC = datetime.UTC


def at(days: int) -> datetime.datetime:
    return T0 + datetime.timedelta(days=days)


def aware(value: datetime.datetime) -> datetime.datetime:
    return value.replace(tzinfo=UTC)


def org_of(customer_row) -> Organization:
    return Developer.objects.select_related("organization").get(pk=customer_row["id"]).organization


def snapshot() -> tuple[list[tuple], list[tuple]]:
    """Everything the conversion decides, row by row (not `updated_at`, which is when the row was written)."""
    org_fields = [f.attname for f in Organization._meta.concrete_fields if f.attname != "updated_at"]
    dev_fields = [f.attname for f in Developer._meta.concrete_fields if f.attname not in ("updated_at",)]
    orgs = [tuple(map(_clock, row)) for row in Organization.objects.order_by("id").values_list(*org_fields)]
    devs = [tuple(map(_clock, row)) for row in Developer.objects.order_by("id").values_list(*dev_fields)]
    return orgs, devs


def _clock(value):
    """Times the conversion took from the clock (the customer had none) differ between runs by design."""
    if isinstance(value, datetime.datetime) and value > aware(at(365)):
        return "now"
    return value


def test_without_the_legacy_table_the_migration_does_nothing(transactional_db):
    OrganizationFactory()
    migrate(BEFORE)
    migrate_forward()
    assert Organization.objects.count() == 1
    assert Developer.objects.count() == 0
    assert is_applied(CONVERSION)
    out = io.StringIO()
    call_command("orgs", "legacy-report", stdout=out)
    assert "No legacy customers table" in out.getvalue()


def test_conversion_rules_forward_back_forward(legacy_table):
    mp_key = "mp_live_" + "Q" * 30  # the older prefix, never re-issued
    hc_key = keys.generate_key()
    revoked_key = keys.generate_key()
    ann = customer(  # NULL company, mixed-case padded email, padded status, old mp_live_ key
        email="  Ann.Lee@Example.COM ",
        first_name="Ann",
        last_name="Lee",
        stripe_customer_id="cus_ann",
        subscription_status=" Active",
        api_key_hash=keys.hash_key(mp_key),
        api_key_prefix=mp_key[:12],
        api_key_created_at=at(2),
        api_key_last_used_at=at(30),
        created_at=at(1),
    )
    bob = customer(  # blank company → the email; no Stripe id
        email="bob@example.com",
        company="   ",
        subscription_status="trialing",
        api_key_hash=keys.hash_key(hc_key),
        api_key_prefix=keys.display_prefix(hc_key),
        created_at=at(3),
    )
    cat = customer(email="cat@example.com", company="Same Co", subscription_status="active")  # NULL Stripe id…
    dan = customer(email="dan@example.com", company=" Same Co ", subscription_status="active")  # …never merges
    eve = customer(
        email="eve@acme.test", company="Zed Corp", stripe_customer_id="cus_SHARED", subscription_status="past_due"
    )
    fay = customer(
        email="fay@acme.test", company="Acme", stripe_customer_id=" cus_SHARED ", subscription_status="canceled"
    )
    gus = customer(email="gus@acme.test", stripe_customer_id="cus_SHARED", subscription_status="trialing")
    hal = customer(  # revoked key stays revoked
        email="hal@example.com",
        subscription_status="active",
        api_key_hash=keys.hash_key(revoked_key),
        api_key_prefix=keys.display_prefix(revoked_key),
        api_key_created_at=at(4),
        api_key_revoked_at=at(9),
    )
    ivy = customer(email="ivy@example.com", subscription_status="canceled", created_at=at(5))  # NULL names, no key
    jon = customer(  # unicode, NULL status, NULL timestamps
        email="jon@example.com",
        first_name="Jöns",
        last_name="Ünïcødé 山田",
        company="  Société Générale ☕ ",
    )
    kim = customer(email="kim@example.com", subscription_status="PAST_DUE")
    everyone = [ann, bob, cat, dan, eve, fay, gus, hal, ivy, jon, kim]
    insert_customers(*everyone)
    before = customers_snapshot()

    migrate(BEFORE)
    migrate_forward()
    converted = snapshot()  # before any key check touches api_key_last_used_at

    assert Developer.objects.count() == 11
    assert Organization.objects.count() == 9  # eve, fay and gus share one
    for row in everyone:
        dev = Developer.objects.get(pk=row["id"])
        assert dev.legacy_customer_id == row["id"]
        assert dev.organization.legacy_customer_id is not None

    dev = Developer.objects.get(pk=ann["id"])
    assert dev.email == "ann.lee@example.com"
    assert (dev.first_name, dev.last_name) == ("Ann", "Lee")
    assert dev.api_key_hash == keys.hash_key(mp_key)
    assert dev.api_key_prefix == mp_key[:12]
    assert dev.api_key_created_at == aware(at(2))
    assert dev.api_key_last_used_at == aware(at(30))
    assert dev.seat_claimed_at == aware(at(2))  # the key's creation orders seats
    assert dev.created_at == aware(at(1))
    org = dev.organization
    assert org.name == "ann.lee@example.com"
    assert (org.stripe_customer_id, org.subscription_status) == ("cus_ann", SubscriptionStatus.ACTIVE)
    assert (org.max_seats, org.pricing_model) == (1, PricingModel.PER_DEVELOPER)
    assert org.billing_email == "ann.lee@example.com"
    assert org.id == ann["id"] and org.legacy_customer_id == ann["id"]

    # The old keys work without being re-issued, whatever their prefix.
    principal = authentication.authenticate_key(mp_key)
    assert (principal.developer_id, principal.organization_id) == (ann["id"], ann["id"])
    assert authentication.authenticate_key(hc_key).developer_id == bob["id"]
    with pytest.raises(KeyRefused) as refused:
        authentication.authenticate_key(revoked_key)
    assert refused.value.code == KeyRefused.KEY_REVOKED
    assert Developer.objects.get(pk=hal["id"]).api_key_revoked_at == aware(at(9))

    bob_org = org_of(bob)
    assert bob_org.name == "bob@example.com"
    assert bob_org.stripe_customer_id is None
    assert bob_org.subscription_status == SubscriptionStatus.TRIALING
    assert Developer.objects.get(pk=bob["id"]).seat_claimed_at == aware(at(3))  # no key date: the customer's

    cat_org, dan_org = org_of(cat), org_of(dan)
    assert cat_org.pk != dan_org.pk
    assert cat_org.name == dan_org.name == "Same Co"
    assert cat_org.max_seats == dan_org.max_seats == 1

    shared = org_of(eve)
    assert org_of(fay) == shared and org_of(gus) == shared
    assert shared.stripe_customer_id == "cus_SHARED"
    assert shared.max_seats == 3
    assert shared.pricing_model == PricingModel.PER_ORGANIZATION
    assert shared.subscription_status == SubscriptionStatus.TRIALING  # trialing beats past_due and canceled
    assert shared.name == "Acme"
    assert shared.legacy_customer_id == min((eve["id"], fay["id"], gus["id"]), key=str)

    ivy_dev = Developer.objects.get(pk=ivy["id"])
    assert (ivy_dev.first_name, ivy_dev.last_name) == ("", "")
    assert ivy_dev.api_key_hash is None and ivy_dev.api_key_prefix == ""
    assert ivy_dev.seat_claimed_at == aware(at(5))
    assert org_of(ivy).subscription_status == SubscriptionStatus.CANCELED

    jon_dev = Developer.objects.get(pk=jon["id"])
    assert (jon_dev.first_name, jon_dev.last_name) == ("Jöns", "Ünïcødé 山田")
    jon_org = org_of(jon)
    assert jon_org.name == "Société Générale ☕"
    assert jon_org.subscription_status == SubscriptionStatus.INCOMPLETE  # NULL status
    assert datetime.timedelta(0) <= jon_dev.created_at - jon_dev.seat_claimed_at <= datetime.timedelta(seconds=1)
    assert abs(jon_dev.created_at - datetime.datetime.now(UTC)) < datetime.timedelta(minutes=5)

    assert org_of(kim).subscription_status == SubscriptionStatus.PAST_DUE
    assert customers_snapshot() == before

    # Back: exactly the converted rows go; a hand-made organization and the customers stay.
    kept = OrganizationFactory(name="Made by hand")
    UsageEventFactory(developer=Developer.objects.get(pk=ann["id"]), tool_name="search")
    migrate(BEFORE)
    assert list(Organization.objects.values_list("pk", flat=True)) == [kept.pk]
    assert Developer.objects.count() == 0
    assert UsageEvent.objects.count() == 0
    assert customers_snapshot() == before

    # Forward again: the same result, to the ids.
    migrate_forward()
    kept.delete()
    assert snapshot() == converted


def test_a_second_run_creates_nothing(legacy_table):
    from django.apps import apps

    from accounts import legacy

    insert_customers(customer(stripe_customer_id="cus_1"), customer(), customer(stripe_customer_id="cus_1"))
    migrate(BEFORE)
    migrate_forward()
    converted = snapshot()
    assert (Organization.objects.count(), Developer.objects.count()) == (2, 3)

    result = legacy.convert(connection, apps)

    assert (result.organizations_created, result.developers_created) == (0, 0)
    assert snapshot() == converted
    out = io.StringIO()
    call_command("orgs", "legacy-report", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["already_converted"] == 3
    assert report["developers_to_create"] == report["organizations_to_create"] == 0


def test_rows_that_cannot_be_converted_stop_it_before_anything_is_written(legacy_table):
    taken = DeveloperFactory(email="taken@example.com")
    hand_made = OrganizationFactory(stripe_customer_id="cus_hand")
    twin_a = customer(email="Twin@Example.com")
    twin_b = customer(email="  twin@example.COM")
    bad_status = customer(subscription_status="cancelled")
    clash = customer(email=" TAKEN@example.com")
    stripe_clash = customer(stripe_customer_id="cus_hand")
    fine = customer(email="fine@example.com", subscription_status="active")
    insert_customers(twin_a, twin_b, bad_status, clash, stripe_clash, fine)
    migrate(BEFORE)

    with pytest.raises(CommandError) as stopped:
        migrate(CONVERSION)

    message = str(stopped.value)
    for row in (twin_a, twin_b, bad_status, clash, stripe_clash):
        assert str(row["id"]) in message
    assert str(fine["id"]) not in message
    assert "duplicate_email" in message and "twin@example.com" in message
    assert "invalid_status" in message and "'cancelled'" in message
    assert "email_taken" in message and str(taken.pk) in message
    assert "stripe_customer_taken" in message and str(hand_made.pk) in message
    assert "UPDATE customers SET" in message  # says how to fix
    assert not is_applied(CONVERSION)
    assert Developer.objects.count() == 1 and Organization.objects.count() == 2  # only the hand-made ones

    # The report lists the same rows before anyone migrates, and exits non-zero.
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("orgs", "legacy-report", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["blocking_customers"] == 5
    assert {p["customer_id"] for p in report["problems"]} == {
        str(r["id"]) for r in (twin_a, twin_b, bad_status, clash, stripe_clash)
    }

    # Fixed, it runs.
    update_customer(twin_b["id"], email="twin.b@example.com")
    update_customer(bad_status["id"], subscription_status="canceled")
    update_customer(clash["id"], email="not.taken@example.com")
    update_customer(stripe_clash["id"], stripe_customer_id=None)
    migrate_forward()
    assert Developer.objects.filter(legacy_customer_id__isnull=False).count() == 6


def test_keys_emails_and_lengths_are_checked(legacy_table):
    key = keys.generate_key()
    same_key_a = customer(api_key_hash=keys.hash_key(key))
    same_key_b = customer(api_key_hash=keys.hash_key(key))
    bad_hash = customer(api_key_hash=keys.hash_key(key).upper()[:40])
    no_email = customer(email="   ")
    no_at = customer(email="someone.example.com")
    long_email = customer(email="e" * 250 + "@x.test")  # no valid address is longer than 254 characters
    long_stripe_id = customer(stripe_customer_id="cus_" + "S" * 252)  # nor a Stripe id longer than 255
    existing = DeveloperFactory()
    key_clash = customer(api_key_hash=existing.api_key_hash)
    insert_customers(same_key_a, same_key_b, bad_hash, no_email, no_at, long_email, long_stripe_id, key_clash)
    migrate(BEFORE)

    with pytest.raises(CommandError) as stopped:
        migrate(CONVERSION)

    message = str(stopped.value)
    expected = {
        "duplicate_key": (same_key_a, same_key_b),
        "invalid_key_hash": (bad_hash,),
        "missing_email": (no_email,),
        "invalid_email": (no_at,),
        "too_long": (long_email, long_stripe_id),
        "key_taken": (key_clash,),
    }
    for code, rows in expected.items():
        section = message.split(f"\n{code}:")[1].split("\n\n")[0]
        for row in rows:
            assert str(row["id"]) in section, code
    assert "email is longer than 254" in message
    assert "stripe_customer_id is longer than 255" in message
    assert Developer.objects.count() == 1 and Organization.objects.count() == 1


def test_long_names_companies_and_prefixes_convert_with_nothing_lost(legacy_table):
    """The old columns were unbounded TEXT; where the new limit was only our choice, the column is unbounded too."""
    company = "Compagnie " + "très longue " * 400
    first, last, prefix = "N" * 300, "L" * 500, "hc_live_" + "p" * 100
    row = customer(company=company, first_name=first, last_name=last, api_key_prefix=prefix)
    insert_customers(row)
    migrate(BEFORE)
    migrate_forward()

    developer = Developer.objects.select_related("organization").get(pk=row["id"])
    assert developer.organization.name == company.strip()
    assert (developer.first_name, developer.last_name, developer.api_key_prefix) == (first, last, prefix)


def test_the_reverse_refuses_to_lose_developers_added_afterwards(legacy_table):
    acme = customer(email="acme@example.com", stripe_customer_id="cus_acme", subscription_status="active")
    insert_customers(acme)
    migrate(BEFORE)
    migrate_forward()
    newcomer = DeveloperFactory(organization=org_of(acme), email="new@example.com")

    with pytest.raises(CommandError) as refused:
        migrate(BEFORE)

    assert "new@example.com" in str(refused.value)
    assert Developer.objects.count() == 2 and Organization.objects.count() == 1
    # The refused rollback has already undone the later migrations (0007's replaced keys are gone), so not the ORM's
    # delete, which would look for the newcomer's replaced keys: the row itself.
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM accounts_developer WHERE id = %s",
            [Developer._meta.pk.get_db_prep_value(newcomer.pk, connection)],
        )
    migrate(BEFORE)
    assert Developer.objects.count() == 0 and Organization.objects.count() == 0


def _schema_of_targets() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT 'index', indexname, indexdef FROM pg_indexes
               WHERE tablename IN ('accounts_organization', 'accounts_developer')
               UNION ALL
               SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint
               WHERE conrelid IN ('accounts_organization'::regclass, 'accounts_developer'::regclass)
               ORDER BY 1, 2"""
        )
        return cursor.fetchall()


@pytest.mark.postgres_only
def test_a_large_conversion_loads_first_and_rebuilds_every_index_and_constraint(legacy_table, monkeypatch):
    """Above the threshold, indexes, unique constraints and foreign keys are dropped for the load and rebuilt."""
    from accounts import legacy
    from accounts.legacy import conversion

    monkeypatch.setattr(conversion, "BULK_LOAD_THRESHOLD", 3)
    key = keys.generate_key()
    rows = [
        customer(email="a@x.test", stripe_customer_id="cus_team", subscription_status="active"),
        customer(email="b@x.test", stripe_customer_id="cus_team", api_key_hash=keys.hash_key(key)),
        customer(email="c@x.test", subscription_status="trialing"),
        customer(email="d@x.test", subscription_status="canceled"),
    ]
    insert_customers(*rows)
    migrate(BEFORE)
    before = _schema_of_targets()
    progress: list[str] = []
    result = legacy.convert(connection, _historical_apps(), progress=progress.append)

    assert (result.organizations_created, result.developers_created) == (3, 4)
    assert any(line.startswith("indexing ") for line in progress), progress
    assert _schema_of_targets() == before
    migrate_forward()
    assert authentication.authenticate_key(key).organization_id == org_of(rows[0]).id
    # The rebuilt constraints hold: the database still refuses a second developer with the same email.
    with pytest.raises(IntegrityError), transaction.atomic():
        Developer.objects.create(organization=org_of(rows[0]), email="A@X.test")


def _historical_apps():
    from django.db.migrations.loader import MigrationLoader

    return MigrationLoader(connection).project_state(CONVERSION).apps
