"""Rotated keys say what happened (`key_rotated`), and a rotation may give the old key a grace period: the rule in
`services.rotate_key`, the answers of the key check, and `manage.py orgs rotate-key --grace`."""

import datetime
import io
import json
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts import check_cache, selectors, services
from accounts.authentication import authenticate_key
from accounts.exceptions import InvalidInput, KeyRefused
from accounts.models import Developer, ReplacedKey
from accounts.services.developers import MAX_GRACE, parse_grace
from tests.factories import DeveloperFactory, ReplacedKeyFactory
from tests.support.keys import refusal_within, time_passes

pytestmark = pytest.mark.django_db

MINUTES_15 = datetime.timedelta(minutes=15)


def refusal(raw_key: str) -> KeyRefused:
    with pytest.raises(KeyRefused) as caught:
        authenticate_key(raw_key)
    return caught.value


def end_grace_by_the_clock(developer: Developer) -> None:
    """Time passes: the stored end of the grace period is now in the past (as another process would see it)."""
    past = timezone.now() - datetime.timedelta(seconds=1)
    assert ReplacedKey.objects.filter(developer=developer, grace_until__isnull=False).update(grace_until=past) == 1


def state(developer: Developer) -> tuple:
    """Everything a refused rotation must leave as it was."""
    return (
        tuple(Developer.objects.filter(pk=developer.pk).values_list("api_key_hash", "api_key_revoked_at").get()),
        sorted(ReplacedKey.objects.values_list("key_hash", "grace_until")),
        LogEntry.objects.count(),
    )


# --- key_rotated ------------------------------------------------------------------------------------------------------


def test_a_rotated_away_key_is_refused_with_key_rotated_the_date_and_the_organization():
    dev = DeveloperFactory(organization__name="Acme Corp")
    old = dev.plain_key
    _, new = services.rotate_key(developer=dev)
    replaced = ReplacedKey.objects.get(developer=dev)

    error = refusal(old)
    assert error.code == "key_rotated"
    assert error.message == (
        f"This key was replaced by a newer one on {replaced.replaced_at:%Y-%m-%d %H:%M} UTC. "
        "Use the new key, or ask an administrator of Acme Corp."
    )
    assert "copied the whole key" not in error.message
    assert authenticate_key(new).developer_id == dev.id


def test_only_the_hash_of_the_replaced_key_is_kept():
    dev = DeveloperFactory()
    old_hash, old_prefix = dev.api_key_hash, dev.api_key_prefix
    services.rotate_key(developer=dev)
    replaced = ReplacedKey.objects.get(developer=dev)
    assert (replaced.key_hash, replaced.key_prefix) == (old_hash, old_prefix)
    assert dev.plain_key not in str(list(ReplacedKey.objects.values()))


def test_a_replaced_key_s_answer_follows_its_row():
    at = datetime.datetime(2026, 12, 3, 14, 5, tzinfo=datetime.UTC)
    replaced = ReplacedKeyFactory(replaced_at=at, developer__organization__name="Demo Org")
    assert refusal(replaced.plain_key).message.startswith(
        "This key was replaced by a newer one on 2026-12-03 14:05 UTC."
    )
    in_grace = ReplacedKeyFactory(grace_until=timezone.now() + MINUTES_15)
    assert authenticate_key(in_grace.plain_key).developer_id == in_grace.developer_id
    revoked = ReplacedKeyFactory(revoked_at=at)
    assert refusal(revoked.plain_key).code == "key_revoked"


def test_a_key_revoked_and_then_replaced_keeps_its_key_revoked_answer():
    dev = DeveloperFactory(organization__name="Acme Corp")
    services.revoke_key(developer=dev)
    revoked_at = Developer.objects.get(pk=dev.pk).api_key_revoked_at
    services.rotate_key(developer=dev)
    error = refusal(dev.plain_key)
    assert error.code == "key_revoked"
    assert f"revoked on {revoked_at:%Y-%m-%d %H:%M} UTC" in error.message and "Acme Corp" in error.message


def test_every_replaced_key_of_a_developer_says_key_rotated():
    dev = DeveloperFactory()
    first = dev.plain_key
    _, second = services.rotate_key(developer=dev)
    _, third = services.rotate_key(developer=dev)
    assert refusal(first).code == refusal(second).code == "key_rotated"
    assert authenticate_key(third).developer_id == dev.id


def test_a_deactivated_developer_s_old_key_says_so_rather_than_use_the_new_key():
    dev = DeveloperFactory()
    services.rotate_key(developer=dev)
    services.deactivate_developer(developer=dev)
    assert refusal(dev.plain_key).code == "developer_inactive"


def test_the_hit_path_is_still_one_query_and_only_a_miss_asks_a_second_time(django_assert_num_queries):
    dev = DeveloperFactory(api_key_last_used_at=timezone.now())
    with django_assert_num_queries(1):
        authenticate_key(dev.plain_key)
    check_cache.clear()
    with django_assert_num_queries(2):
        assert refusal("hc_live_" + "q" * 40).code == "invalid_key"
    services.rotate_key(developer=dev)
    with django_assert_num_queries(2):
        assert refusal(dev.plain_key).code == "key_rotated"
    with django_assert_num_queries(0):  # a known (replaced) key is remembered like any other answer
        assert refusal(dev.plain_key).code == "key_rotated"


# --- grace period ----------------------------------------------------------------------------------------------


def test_during_the_grace_period_both_keys_work_on_one_seat():
    dev = DeveloperFactory(organization__max_seats=1)
    org = dev.organization
    old = dev.plain_key
    assert selectors.seats_in_use(org) == 1
    _, new = services.rotate_key(developer=dev, grace=MINUTES_15)

    assert authenticate_key(old).developer_id == dev.id
    assert authenticate_key(new).developer_id == dev.id
    assert authenticate_key(old) == authenticate_key(new)
    assert selectors.seats_in_use(org) == 1  # the organization's only seat covers both
    until = ReplacedKey.objects.get(developer=dev).grace_until
    assert MINUTES_15 - datetime.timedelta(seconds=5) < until - timezone.now() <= MINUTES_15
    assert Developer.objects.with_old_key_grace().get(pk=dev.pk).old_key_works_until == until
    assert "The old key works until" in LogEntry.objects.get(object_id=str(dev.pk)).change_message


def test_after_the_grace_period_the_old_key_is_refused_with_key_rotated():
    dev = DeveloperFactory(organization__name="Acme Corp")
    _, new = services.rotate_key(developer=dev, grace=MINUTES_15)
    assert authenticate_key(dev.plain_key).developer_id == dev.id
    end_grace_by_the_clock(dev)
    check_cache.clear()
    error = refusal(dev.plain_key)
    assert error.code == "key_rotated"
    assert "replaced by a newer one on" in error.message and "Acme Corp" in error.message
    assert authenticate_key(new).developer_id == dev.id
    assert Developer.objects.with_old_key_grace().get(pk=dev.pk).old_key_works_until is None


def test_a_remembered_old_key_stops_at_its_grace_end_without_asking_again(monkeypatch, django_assert_num_queries):
    dev = DeveloperFactory()
    services.rotate_key(developer=dev, grace=MINUTES_15)
    soon = timezone.now() + datetime.timedelta(milliseconds=300)
    ReplacedKey.objects.filter(developer=dev).update(grace_until=soon)
    check_cache.clear()
    assert authenticate_key(dev.plain_key).developer_id == dev.id  # remembered now, with its grace end
    time_passes(monkeypatch, max(0.0, (soon - timezone.now()).total_seconds()) + 0.05)
    with django_assert_num_queries(0):
        assert refusal(dev.plain_key).code == "key_rotated"


def test_the_grace_end_set_elsewhere_is_seen_within_the_memory_s_second():
    dev = DeveloperFactory()
    services.rotate_key(developer=dev, grace=MINUTES_15)
    authenticate_key(dev.plain_key)
    end_grace_by_the_clock(dev)  # as another process's write would: this process's memory is not cleared
    assert refusal_within(dev.plain_key).code == "key_rotated"


def test_revoking_ends_the_grace_at_once():
    dev = DeveloperFactory()
    _, new = services.rotate_key(developer=dev, grace=MINUTES_15)
    assert authenticate_key(dev.plain_key).developer_id == dev.id
    services.revoke_key(developer=dev)
    assert refusal(dev.plain_key).code == "key_revoked"
    assert refusal(new).code == "key_revoked"
    assert ReplacedKey.objects.get(developer=dev).grace_until <= timezone.now()
    assert selectors.seats_in_use(dev.organization) == 0


def test_deactivating_ends_the_grace_at_once_and_reactivating_does_not_bring_it_back():
    dev = DeveloperFactory()
    _, new = services.rotate_key(developer=dev, grace=MINUTES_15)
    assert authenticate_key(dev.plain_key).developer_id == dev.id
    services.deactivate_developer(developer=dev)
    assert refusal(dev.plain_key).code == "developer_inactive"
    assert refusal(new).code == "developer_inactive"
    services.activate_developer(developer=dev)
    assert refusal(dev.plain_key).code == "key_rotated"
    assert authenticate_key(new).developer_id == dev.id


def test_revoking_every_key_of_the_organization_ends_the_grace_too():
    dev = DeveloperFactory()
    services.rotate_key(developer=dev, grace=MINUTES_15)
    services.revoke_all_keys(organizations=[dev.organization])
    assert refusal(dev.plain_key).code == "key_revoked"


def test_a_second_rotation_during_a_grace_stops_the_first_old_key_at_once():
    dev = DeveloperFactory()
    first = dev.plain_key
    _, second = services.rotate_key(developer=dev, grace=MINUTES_15)
    _, third = services.rotate_key(developer=dev, grace=MINUTES_15)
    assert refusal(first).code == "key_rotated"
    assert authenticate_key(second).developer_id == dev.id  # the key just replaced has the new grace period
    assert authenticate_key(third).developer_id == dev.id
    assert ReplacedKey.objects.filter(developer=dev, grace_until__gt=timezone.now()).count() == 1
    services.rotate_key(developer=dev)  # and a rotation without grace stops the one in its grace period
    assert refusal(second).code == "key_rotated"


def test_an_old_key_in_its_grace_follows_the_organization_s_state():
    dev = DeveloperFactory()
    services.rotate_key(developer=dev, grace=MINUTES_15)
    services.set_status(organization=dev.organization, status="past_due")
    assert refusal(dev.plain_key).code == "subscription_inactive"
    services.set_status(organization=dev.organization, status="active")
    services.set_seats(organization=dev.organization, max_seats=0)
    assert refusal(dev.plain_key).code == "seat_limit_exceeded"


def test_the_grace_does_not_outlive_the_old_key_s_own_expiry():
    soon = timezone.now() + datetime.timedelta(minutes=5)
    dev = DeveloperFactory(api_key_expires_at=soon)
    services.rotate_key(developer=dev, grace=datetime.timedelta(hours=2))
    assert ReplacedKey.objects.get(developer=dev).grace_until == soon


@pytest.mark.parametrize(
    ("make", "says"),
    [
        ({"api_key_revoked_at": timezone.now}, "(revoked)"),
        ({"is_active": lambda: False}, "(deactivated)"),
        ({"api_key_expires_at": lambda: timezone.now() - datetime.timedelta(minutes=1)}, "expired on"),
    ],
)
def test_only_a_working_key_gets_a_grace_period(make, says):
    dev = DeveloperFactory(**{field: value() for field, value in make.items()})
    before = state(dev)
    with pytest.raises(InvalidInput, match="rotate without one") as refused:
        services.rotate_key(developer=dev, grace=MINUTES_15)
    assert says in refused.value.message
    assert state(dev) == before


@pytest.mark.parametrize("grace", [MAX_GRACE + datetime.timedelta(seconds=1), datetime.timedelta(minutes=-5)])
def test_the_service_refuses_a_grace_out_of_bounds_and_changes_nothing(grace):
    dev = DeveloperFactory()
    before = state(dev)
    with pytest.raises(InvalidInput):
        services.rotate_key(developer=dev, grace=grace)
    assert state(dev) == before
    assert authenticate_key(dev.plain_key).developer_id == dev.id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", datetime.timedelta(seconds=30)),
        ("15m", MINUTES_15),
        (" 2H ", datetime.timedelta(hours=2)),
        ("1d", datetime.timedelta(days=1)),
        ("24h", MAX_GRACE),
        ("1h30m", datetime.timedelta(minutes=90)),
        ("", None),
        ("0", None),
        (None, None),
    ],
)
def test_grace_durations(text, expected):
    assert parse_grace(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("25h", "at most 24 hours (24h), not 1d1h"),
        ("2d", "at most 24 hours"),
        ("1441m", "at most 24 hours"),
        ("15", "is not a grace period"),
        ("15 minutes", "is not a grace period"),
        ("-5m", "is not a grace period"),
        ("1.5h", "is not a grace period"),
        ("m15", "is not a grace period"),
    ],
)
def test_bad_grace_durations_say_what_is_accepted(text, says):
    with pytest.raises(InvalidInput, match=re.escape(says)):
        parse_grace(text)


# --- the command line ------------------------------------------------------------------------------------------


def orgs(*args: str) -> str:
    out = io.StringIO()
    call_command("orgs", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


class TestCommandLine:
    def test_rotate_key_with_grace_prints_when_the_old_key_stops(self):
        dev = DeveloperFactory()
        text = orgs("rotate-key", str(dev.id), "--grace", "15m")
        until = ReplacedKey.objects.get(developer=dev).grace_until
        assert f"the old one keeps working until {until:%Y-%m-%d %H:%M:%S} UTC, then stops" in text
        assert authenticate_key(dev.plain_key).developer_id == dev.id
        assert selectors.seats_in_use(dev.organization) == 1

    def test_json_shows_the_grace_end_in_rotate_key_and_list_devs(self):
        dev = DeveloperFactory()
        data = json.loads(orgs("rotate-key", str(dev.id), "--grace", "2h", "--json"))
        until = ReplacedKey.objects.get(developer=dev).grace_until
        assert data["old_key_works_until"] == until.isoformat()
        assert authenticate_key(data["api_key"]).developer_id == dev.id
        (listed,) = json.loads(orgs("list-devs", "--json"))
        assert listed["old_key_works_until"] == until.isoformat()
        assert f"old key until {until:%Y-%m-%d %H:%M}" in orgs("list-devs")
        shown = json.loads(orgs("show-org", str(dev.organization_id), "--json"))
        assert shown["developers"][0]["old_key_works_until"] == until.isoformat()

    def test_without_grace_the_old_key_stops_at_once(self):
        dev = DeveloperFactory()
        data = json.loads(orgs("rotate-key", str(dev.id), "--json"))
        assert data["old_key_works_until"] is None
        assert "the old one no longer works" in orgs("rotate-key", str(dev.id))
        assert refusal(dev.plain_key).code == "key_rotated"

    @pytest.mark.parametrize(
        ("grace", "says"),
        [
            ("25h", "A grace period is at most 24 hours (24h), not 1d1h"),
            ("2d", "A grace period is at most 24 hours"),
            ("soon", "'soon' is not a grace period: use a number and a unit, e.g. 30s, 15m, 2h or 1d"),
            ("15", "'15' is not a grace period"),
        ],
    )
    def test_a_bad_grace_is_one_clear_error_and_changes_nothing(self, grace, says):
        dev = DeveloperFactory()
        before = state(dev)
        with pytest.raises(CommandError, match=re.escape(says)) as refused:
            orgs("rotate-key", str(dev.id), "--grace", grace)
        assert "\n" not in str(refused.value)
        assert state(dev) == before
        assert authenticate_key(dev.plain_key).developer_id == dev.id

    def test_a_grace_for_a_revoked_key_is_refused_and_changes_nothing(self):
        dev = DeveloperFactory(api_key_revoked_at=timezone.now())
        before = state(dev)
        with pytest.raises(CommandError, match="does not work now"):
            orgs("rotate-key", str(dev.id), "--grace", "15m")
        assert state(dev) == before
