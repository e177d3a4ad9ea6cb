import asyncio
import datetime
import logging

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import check_cache, keys, last_used, services
from accounts.authentication import Principal, aauthenticate_key, authenticate_key
from accounts.exceptions import KeyRefused
from accounts.models import Developer, Organization
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support.keys import refusal_within, time_passes

pytestmark = pytest.mark.django_db


def refusal(raw_key: str) -> KeyRefused:
    with pytest.raises(KeyRefused) as caught:
        authenticate_key(raw_key)
    return caught.value


def test_a_good_key_gives_the_principal():
    dev = DeveloperFactory(organization__name="Acme Corp", email="alice@acme.com", first_name="Alice")
    principal = authenticate_key(dev.plain_key)
    assert principal == Principal(
        developer_id=dev.id,
        organization_id=dev.organization_id,
        email="alice@acme.com",
        first_name="Alice",
        last_name=dev.last_name,
        organization_name="Acme Corp",
        subscription_status="active",
        max_seats=dev.organization.max_seats,
    )


@pytest.mark.parametrize("raw", ["", "hc_live_unknown", "not-a-key", "hc_live_" + "x" * 5000])
def test_unknown_or_malformed_keys_are_invalid(raw):
    error = refusal(raw)
    assert error.code == "invalid_key"
    assert "not valid" in error.message


def test_a_malformed_key_is_refused_without_asking_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert refusal("x" * 1_000_000).code == "invalid_key"


def test_a_legacy_mp_live_key_validates_by_its_hash_alone():
    legacy = "mp_live_3f9a0c2b7d"  # shorter and shaped differently from new keys
    DeveloperFactory(plain_key=legacy)
    assert authenticate_key(legacy).email.endswith("@example.com")


def test_revoked_key():
    dev = DeveloperFactory(organization__name="Acme")
    services.revoke_key(developer=dev)
    error = refusal(dev.plain_key)
    assert error.code == "key_revoked"
    assert "revoked" in error.message and "Acme" in error.message


def test_rotated_away_key_stops_working_and_the_new_one_works():
    dev = DeveloperFactory()
    old = dev.plain_key
    authenticate_key(old)
    _, new = services.rotate_key(developer=dev)
    assert refusal(old).code == "key_rotated"  # tests/accounts/test_key_rotation.py has the rest
    assert authenticate_key(new).developer_id == dev.id


def test_expired_key():
    dev = DeveloperFactory(api_key_expires_at=timezone.now() - datetime.timedelta(seconds=1))
    error = refusal(dev.plain_key)
    assert error.code == "key_expired"
    assert "expired" in error.message


def test_a_key_expires_while_remembered(monkeypatch, django_assert_num_queries):
    dev = DeveloperFactory(api_key_expires_at=timezone.now() + datetime.timedelta(milliseconds=300))
    authenticate_key(dev.plain_key)
    time_passes(monkeypatch, 0.35)  # the key's expiry, not the memory's second
    with django_assert_num_queries(0):  # still remembered: the remembered expiry refuses it
        assert refusal(dev.plain_key).code == "key_expired"


def test_inactive_developer():
    dev = DeveloperFactory(email="bob@acme.com")
    services.deactivate_developer(developer=dev)
    error = refusal(dev.plain_key)
    assert error.code == "developer_inactive"
    assert "bob@acme.com" in error.message


@pytest.mark.parametrize("status", ["incomplete", "incomplete_expired", "past_due", "canceled", "unpaid", "paused"])
def test_inactive_subscription_says_the_status(status):
    dev = DeveloperFactory(organization__name="Acme", organization__subscription_status=status)
    error = refusal(dev.plain_key)
    assert error.code == "subscription_inactive"
    assert f"Acme's subscription is {status}" in error.message


@pytest.mark.parametrize("status", ["active", "trialing"])
def test_active_and_trialing_subscriptions_work(status):
    dev = DeveloperFactory(organization__subscription_status=status)
    assert authenticate_key(dev.plain_key).subscription_status == status


def test_a_setting_may_allow_past_due(settings):
    settings.HOTCROSS_ALLOWED_STATUSES = ["active", "trialing", "past_due"]
    dev = DeveloperFactory(organization__subscription_status="past_due")
    assert authenticate_key(dev.plain_key).developer_id == dev.id


class TestDowngrade:
    def test_the_earliest_seat_holders_keep_access_and_the_newest_are_refused(self):
        org = OrganizationFactory(name="Acme", max_seats=3)
        first, second, third = (
            DeveloperFactory(organization=org, seat_claimed_at=timezone.now() - datetime.timedelta(days=d))
            for d in (30, 20, 10)
        )
        services.set_seats(organization=org, max_seats=2)
        assert authenticate_key(first.plain_key).developer_id == first.id
        assert authenticate_key(second.plain_key).developer_id == second.id
        error = refusal(third.plain_key)
        assert error.code == "seat_limit_exceeded"
        assert "Acme has 2 seats" in error.message

    def test_a_freed_seat_goes_to_the_next_in_line(self):
        org = OrganizationFactory(max_seats=2)
        first = DeveloperFactory(organization=org)
        DeveloperFactory(organization=org)
        third = DeveloperFactory(organization=org)
        services.set_seats(organization=org, max_seats=2)
        assert refusal(third.plain_key).code == "seat_limit_exceeded"
        services.revoke_key(developer=first)
        assert authenticate_key(third.plain_key).developer_id == third.id

    def test_zero_seats_refuses_everyone(self):
        dev = DeveloperFactory(organization__max_seats=0)
        assert refusal(dev.plain_key).code == "seat_limit_exceeded"


class TestCost:
    def test_a_cold_check_is_one_query(self, django_assert_num_queries):
        dev = DeveloperFactory(api_key_last_used_at=timezone.now())
        with django_assert_num_queries(1):
            authenticate_key(dev.plain_key)

    @pytest.mark.postgres_only
    def test_on_postgresql_the_key_check_stays_prepared_on_its_connection(self, settings):
        threshold = connection.settings_dict["OPTIONS"].get("prepare_threshold")
        if threshold is None:
            pytest.skip("DATABASE_PREPARED_STATEMENTS=false")
        settings.HOTCROSS_KEY_CACHE_SECONDS = 0
        dev = DeveloperFactory(api_key_last_used_at=timezone.now())
        for _ in range(threshold + 1):
            assert authenticate_key(dev.plain_key).developer_id == dev.id
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [row[0] for row in cursor.fetchall()]
        assert any("api_key_hash" in statement and "beyond_seat_limit" in statement for statement in prepared)

    def test_a_warm_check_asks_nothing(self, django_assert_num_queries):
        dev = DeveloperFactory()
        authenticate_key(dev.plain_key)
        with django_assert_num_queries(0):
            for _ in range(100):
                authenticate_key(dev.plain_key)

    def test_a_cold_check_is_one_query_even_when_the_last_used_write_is_due(self, django_assert_num_queries):
        dev = DeveloperFactory(api_key_last_used_at=None)
        with django_assert_num_queries(1):
            authenticate_key(dev.plain_key)

    def test_last_used_is_written_behind_at_most_once_a_minute(self):
        dev = DeveloperFactory(api_key_last_used_at=None)
        authenticate_key(dev.plain_key)
        dev.refresh_from_db()
        assert dev.api_key_last_used_at is None  # not by the check: behind it
        last_used.write_pending()
        dev.refresh_from_db()
        first = dev.api_key_last_used_at
        assert first is not None
        for _ in range(3):
            check_cache.clear()  # force cold checks
            with CaptureQueriesContext(connection) as queries:
                authenticate_key(dev.plain_key)
                last_used.write_pending()
            assert not any(q["sql"].startswith("UPDATE") for q in queries.captured_queries)
        dev.refresh_from_db()
        assert dev.api_key_last_used_at == first

        Developer.objects.filter(pk=dev.pk).update(api_key_last_used_at=first - datetime.timedelta(seconds=61))
        check_cache.clear()
        authenticate_key(dev.plain_key)
        last_used.write_pending()
        dev.refresh_from_db()
        assert dev.api_key_last_used_at > first

    def test_a_refused_key_does_not_count_as_used(self):
        dev = DeveloperFactory(organization__subscription_status="canceled")
        refusal(dev.plain_key)
        last_used.write_pending()
        dev.refresh_from_db()
        assert dev.api_key_last_used_at is None


class TestMemory:
    def test_changes_through_services_apply_to_the_very_next_check(self):
        dev = DeveloperFactory()
        authenticate_key(dev.plain_key)
        services.set_status(organization=dev.organization, status="canceled")
        assert refusal(dev.plain_key).code == "subscription_inactive"
        services.set_status(organization=dev.organization, status="active")
        services.set_seats(organization=dev.organization, max_seats=0)
        assert refusal(dev.plain_key).code == "seat_limit_exceeded"

    def test_changes_made_elsewhere_apply_within_one_second(self):
        """Another worker's revocation reaches this process's memory only by expiry: at most one second."""
        dev = DeveloperFactory()
        authenticate_key(dev.plain_key)
        Developer.objects.filter(pk=dev.pk).update(api_key_revoked_at=timezone.now())  # as another process would
        assert refusal_within(dev.plain_key).code == "key_revoked"

    def test_the_memory_is_capped_at_one_second_whatever_the_setting(self, settings):
        settings.HOTCROSS_KEY_CACHE_SECONDS = 60
        assert check_cache.ttl() == 1.0

    def test_unknown_keys_are_not_remembered(self):
        for _ in range(50):
            refusal(keys.generate_key())
        assert check_cache._entries == {}

    def test_the_memory_can_be_turned_off(self, settings, django_assert_num_queries):
        settings.HOTCROSS_KEY_CACHE_SECONDS = 0
        dev = DeveloperFactory(api_key_last_used_at=timezone.now())
        with django_assert_num_queries(3):
            for _ in range(3):
                authenticate_key(dev.plain_key)


@pytest.mark.django_db(transaction=True)
def test_the_async_twin_gives_the_same_answers():
    good = DeveloperFactory()
    revoked = DeveloperFactory(api_key_revoked_at=timezone.now())

    async def check():
        principal = await aauthenticate_key(good.plain_key)
        again = await aauthenticate_key(good.plain_key)  # from memory, on the event loop
        with pytest.raises(KeyRefused) as caught:
            await aauthenticate_key(revoked.plain_key)
        with pytest.raises(KeyRefused) as invalid:
            await aauthenticate_key("nope")
        return principal, again, caught.value.code, invalid.value.code

    principal, again, code, invalid = asyncio.run(check())
    assert principal.developer_id == good.id == again.developer_id
    assert (code, invalid) == ("key_revoked", "invalid_key")


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_async_twin_gives_its_database_connection_back_to_the_pool():
    developer = DeveloperFactory()
    pool = connection.pool

    def in_use() -> int:
        stats = pool.get_stats()
        return stats["pool_size"] - stats["pool_available"]

    before = in_use()
    for _ in range(3):
        check_cache.clear()
        asyncio.run(aauthenticate_key(developer.plain_key))
    assert in_use() == before


def test_no_plain_key_reaches_the_logs_the_sql_or_the_database(caplog):
    caplog.set_level(logging.DEBUG)
    with CaptureQueriesContext(connection) as queries:
        org = services.create_organization(name="Acme", max_seats=2, subscription_status="active")
        dev, key = services.add_developer(organization=org, email="a@acme.com")
        authenticate_key(key)
        _, rotated = services.rotate_key(developer=dev)
        authenticate_key(rotated)
        services.revoke_key(developer=dev)
        with pytest.raises(KeyRefused):
            authenticate_key(rotated)
    said = caplog.text + "".join(str(r.args) for r in caplog.records)
    said += "".join(q["sql"] for q in queries.captured_queries)
    stored = [row for model in (Developer, Organization, LogEntry) for row in model.objects.values()]
    assert stored and caplog.records
    for secret in (key[12:], rotated[12:]):  # everything after the display prefix
        assert secret not in said
        assert all(secret not in str(value) for row in stored for value in row.values())
