import datetime

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.utils import timezone

from accounts import audit, keys, services
from accounts.exceptions import DuplicateEmail, InvalidInput, KeyChanged, SeatLimitReached
from accounts.models import Developer, Organization, PricingModel, SubscriptionStatus
from accounts.selectors import seats_in_use
from tests.factories import DeveloperFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


def history(obj) -> list[str]:
    return list(
        LogEntry.objects.filter(object_id=str(obj.pk))
        .order_by("action_time", "id")
        .values_list("change_message", flat=True)
    )


class TestCreateOrganization:
    def test_defaults_follow_the_domain(self):
        org = services.create_organization(name="  Acme Corp ")
        assert org.name == "Acme Corp"
        assert org.subscription_status == SubscriptionStatus.INCOMPLETE
        assert org.max_seats == 1
        assert org.pricing_model == PricingModel.PER_ORGANIZATION
        assert org.stripe_customer_id is None

    def test_blank_stripe_ids_are_stored_as_null_so_many_organizations_can_lack_one(self):
        services.create_organization(name="A", stripe_customer_id="")
        services.create_organization(name="B", stripe_customer_id="  ")
        assert Organization.objects.filter(stripe_customer_id__isnull=True).count() == 2

    def test_a_stripe_customer_belongs_to_one_organization(self):
        services.create_organization(name="A", stripe_customer_id="cus_1")
        with pytest.raises(InvalidInput, match="already has the Stripe customer id cus_1"):
            services.create_organization(name="B", stripe_customer_id="cus_1")
        assert Organization.objects.count() == 1

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"max_seats": -1}, "max seats"),
            ({"subscription_status": "bogus"}, "subscription status"),
            ({"pricing_model": "free"}, "pricing model"),
            ({"name": "   "}, "name"),
            ({"billing_email": "not-an-email"}, "billing email"),
        ],
    )
    def test_bad_fields_are_refused_and_nothing_is_written(self, fields, message):
        with pytest.raises(InvalidInput, match=message):
            services.create_organization(**{"name": "Acme", **fields})
        assert not Organization.objects.exists()

    def test_creation_is_in_the_admin_history_against_the_system_user(self):
        org = services.create_organization(name="Acme", max_seats=3)
        entry = LogEntry.objects.get(object_id=str(org.pk))
        assert entry.action_flag == ADDITION
        assert entry.user.username == audit.SYSTEM_USERNAME
        assert "3 seat" in entry.change_message


class TestAddDeveloper:
    def test_returns_the_plain_key_once_and_stores_only_its_hash(self):
        org = OrganizationFactory()
        dev, key = services.add_developer(organization=org, email=" Alice@Acme.COM ", first_name="Alice")
        dev.refresh_from_db()
        assert dev.email == "alice@acme.com"
        assert dev.api_key_hash == keys.hash_key(key)
        assert dev.api_key_prefix == key[:12]
        stored = Developer.objects.filter(pk=dev.pk).values().get()
        assert key not in {str(v) for v in stored.values()}

    def test_email_is_unique_ignoring_case(self):
        org = OrganizationFactory()
        services.add_developer(organization=org, email="alice@acme.com")
        with pytest.raises(DuplicateEmail, match=r"alice@acme\.com already exists"):
            services.add_developer(organization=OrganizationFactory(), email="ALICE@acme.com")
        assert Developer.objects.count() == 1

    def test_the_database_enforces_case_insensitive_email_uniqueness_too(self):
        from django.db import IntegrityError, transaction

        dev = DeveloperFactory(email="bob@acme.com")
        with pytest.raises(IntegrityError), transaction.atomic():
            DeveloperFactory(organization=dev.organization, email="BOB@acme.com")

    def test_a_full_organization_refuses_with_a_message_naming_the_seats(self):
        org = OrganizationFactory(name="Acme Corp", max_seats=2)
        DeveloperFactory.create_batch(2, organization=org)
        with pytest.raises(SeatLimitReached, match="Acme Corp uses 2 of 2 seats"):
            services.add_developer(organization=org, email="third@acme.com")
        assert org.developers.count() == 2

    def test_revoked_and_inactive_developers_do_not_hold_seats(self):
        org = OrganizationFactory(max_seats=2)
        DeveloperFactory(organization=org, api_key_revoked_at=timezone.now())
        DeveloperFactory(organization=org, is_active=False)
        DeveloperFactory(organization=org)
        assert seats_in_use(org) == 1
        services.add_developer(organization=org, email="new@acme.com")
        assert seats_in_use(org) == 2

    def test_invalid_email_is_refused(self):
        with pytest.raises(InvalidInput, match="email"):
            services.add_developer(organization=OrganizationFactory(), email="nope")
        assert not Developer.objects.exists()


class TestKeys:
    def test_revoke_frees_the_seat_and_is_idempotent(self):
        org = OrganizationFactory(max_seats=1)
        dev = DeveloperFactory(organization=org)
        assert services.revoke_key(developer=dev) is True
        assert services.revoke_key(developer=dev) is False
        dev.refresh_from_db()
        assert dev.api_key_revoked_at is not None
        assert seats_in_use(org) == 0
        assert history(dev) == [f"Revoked key {dev.api_key_prefix}…."]

    def test_rotate_replaces_the_key_and_keeps_the_seat(self):
        org = OrganizationFactory(max_seats=1)
        ahead = timezone.now() + datetime.timedelta(days=1)
        dev = DeveloperFactory(organization=org, api_key_expires_at=ahead)
        claimed = dev.seat_claimed_at
        old_hash = dev.api_key_hash
        dev, key = services.rotate_key(developer=dev)
        dev.refresh_from_db()
        assert dev.api_key_hash == keys.hash_key(key) != old_hash
        assert dev.api_key_expires_at == ahead  # the end of the developer's access, not of one key
        assert dev.seat_claimed_at == claimed
        assert seats_in_use(org) == 1

    def test_rotate_if_key_version_rotates_once_for_one_confirmation(self):
        dev = DeveloperFactory()
        shown = dev.key_version
        dev, key = services.rotate_key(developer=dev, if_key_version=shown)
        with pytest.raises(KeyChanged, match="already rotated"):
            services.rotate_key(developer=dev, if_key_version=shown)  # the same confirmation, replayed
        dev.refresh_from_db()
        assert dev.api_key_hash == keys.hash_key(key)
        assert dev.key_version != shown

    def test_rekeying_a_revoked_developer_needs_a_free_seat(self):
        org = OrganizationFactory(name="Acme", max_seats=1)
        revoked = DeveloperFactory(organization=org, api_key_revoked_at=timezone.now())
        DeveloperFactory(organization=org)
        with pytest.raises(SeatLimitReached, match="Acme uses 1 of 1 seat"):
            services.rotate_key(developer=revoked)
        revoked.refresh_from_db()
        assert revoked.api_key_revoked_at is not None

    def test_rekeying_takes_the_newest_seat(self):
        org = OrganizationFactory(max_seats=2)
        revoked = DeveloperFactory(organization=org, api_key_revoked_at=timezone.now())
        other = DeveloperFactory(organization=org)
        services.rotate_key(developer=revoked)
        revoked.refresh_from_db()
        assert revoked.api_key_revoked_at is None
        assert revoked.seat_claimed_at > other.seat_claimed_at

    def test_key_expiry_needs_a_time_zone(self):
        dev = DeveloperFactory()
        with pytest.raises(InvalidInput, match="time zone"):
            services.set_key_expiry(developer=dev, expires_at=datetime.datetime(2030, 1, 1))
        dev.refresh_from_db()
        assert dev.api_key_expires_at is None


class TestActivation:
    def test_deactivate_frees_the_seat_and_activate_needs_one(self):
        org = OrganizationFactory(name="Acme", max_seats=1)
        dev = DeveloperFactory(organization=org)
        assert services.deactivate_developer(developer=dev) is True
        assert services.deactivate_developer(developer=dev) is False
        DeveloperFactory(organization=org)
        with pytest.raises(SeatLimitReached):
            services.activate_developer(developer=dev)
        dev.refresh_from_db()
        assert dev.is_active is False

    def test_reactivated_developer_joins_the_end_of_the_seat_order(self):
        org = OrganizationFactory(max_seats=3)
        dev = DeveloperFactory(organization=org)
        later = DeveloperFactory(organization=org)
        services.deactivate_developer(developer=dev)
        assert services.activate_developer(developer=dev) is True
        dev.refresh_from_db()
        assert dev.is_active and dev.seat_claimed_at > later.seat_claimed_at

    def test_activating_a_developer_with_a_revoked_key_needs_no_seat(self):
        org = OrganizationFactory(max_seats=1)
        dev = DeveloperFactory(organization=org, is_active=False, api_key_revoked_at=timezone.now())
        DeveloperFactory(organization=org)
        assert services.activate_developer(developer=dev) is True


class TestStatusAndSeats:
    def test_status_is_normalised_and_validated(self):
        org = OrganizationFactory(subscription_status="incomplete")
        services.set_status(organization=org, status=" Active ")
        org.refresh_from_db()
        assert org.subscription_status == "active"
        with pytest.raises(InvalidInput, match="'bogus' is not a subscription status"):
            services.set_status(organization=org, status="bogus")
        org.refresh_from_db()
        assert org.subscription_status == "active"

    def test_setting_the_same_status_twice_records_one_history_line(self):
        org = OrganizationFactory(subscription_status="trialing")
        services.set_status(organization=org, status="active")
        services.set_status(organization=org, status="active")
        assert history(org) == ["Subscription status: trialing → active."]

    def test_seats_may_drop_below_use_and_the_history_says_who_loses_access(self):
        org = OrganizationFactory(max_seats=3)
        DeveloperFactory.create_batch(3, organization=org)
        services.set_seats(organization=org, max_seats=1)
        org.refresh_from_db()
        assert org.max_seats == 1
        assert history(org) == ["Seats: 3 → 1. 3 in use: the 2 newest seat holders are refused."]

    @pytest.mark.parametrize("bad", [-1, "3", 2.5, True, None])
    def test_seats_must_be_a_whole_number_of_zero_or_more(self, bad):
        org = OrganizationFactory(max_seats=2)
        with pytest.raises(InvalidInput, match="whole number"):
            services.set_seats(organization=org, max_seats=bad)
        org.refresh_from_db()
        assert org.max_seats == 2
