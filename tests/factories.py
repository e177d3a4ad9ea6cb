"""factory-boy factories, one per model of ours (accounts, oauth, api; `tests/test_factories.py` checks there is one
for each and that each saves). Developers get a real key: `DeveloperFactory.plain_key` is the key to present. Usage
events, rollups and meter reports belong to their developer's organization unless told otherwise.
`LegacyCustomerFactory` needs the legacy `customers` table (`tests.support.legacy.create_customers_table`)."""

from __future__ import annotations

import datetime
import hashlib
import secrets
import uuid

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from accounts import keys
from accounts.models import (
    Developer,
    LegacyCustomer,
    MeterReport,
    Organization,
    PricingModel,
    ReplacedKey,
    SubscriptionStatus,
    UsageBillingState,
    UsageEvent,
    UsageRollup,
)
from api.models import ReportedEvent
from oauth.models import Client, DeveloperAccount, Grant, SignInCode, SignInEvent, SpentCode


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    stripe_customer_id = factory.Sequence(lambda n: f"cus_test{n:06d}")
    subscription_status = SubscriptionStatus.ACTIVE
    max_seats = 5
    pricing_model = PricingModel.PER_ORGANIZATION


class _KeepsPlainKey(factory.django.DjangoModelFactory):
    """A factory whose `plain_key` is not a model field: only its hash is stored, and the key is set on the
    instance so tests can present it."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        plain_key = kwargs.pop("plain_key")
        instance = super()._create(model_class, *args, **kwargs)
        instance.plain_key = plain_key
        return instance

    @classmethod
    def _build(cls, model_class, *args, **kwargs):
        plain_key = kwargs.pop("plain_key")
        instance = super()._build(model_class, *args, **kwargs)
        instance.plain_key = plain_key
        return instance


class DeveloperFactory(_KeepsPlainKey):
    """`plain_key` is set on the built instance (never stored), so tests can present the key."""

    class Meta:
        model = Developer

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"dev{n}@example.com")
    first_name = "Ada"
    last_name = factory.Sequence(lambda n: f"Tester{n}")
    plain_key = factory.LazyFunction(keys.generate_key)
    api_key_hash = factory.LazyAttribute(lambda o: keys.hash_key(o.plain_key))
    api_key_prefix = factory.LazyAttribute(lambda o: keys.display_prefix(o.plain_key))
    api_key_created_at = factory.LazyFunction(timezone.now)
    seat_claimed_at = factory.LazyFunction(timezone.now)


class UsageEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageEvent

    developer = factory.SubFactory(DeveloperFactory)
    organization = factory.LazyAttribute(lambda o: o.developer.organization)
    tool_name = "whoami"
    ok = True
    duration_ms = 1
    created_at = factory.LazyFunction(timezone.now)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        """Through the writers' own path (`record_usage`), so that the rollups count the event as they would a served
        call's."""
        from accounts.services import record_usage

        return record_usage(
            developer_id=kwargs["developer"].pk,
            organization_id=kwargs["organization"].pk,
            tool_name=kwargs["tool_name"],
            ok=kwargs["ok"],
            duration_ms=kwargs["duration_ms"],
            created_at=kwargs["created_at"],
        )


class ReplacedKeyFactory(_KeepsPlainKey):
    """A key a rotation replaced. `plain_key` is set on the built instance (only its hash is stored), like
    `DeveloperFactory`'s; `grace_until` a time to make it an old key in its grace period."""

    class Meta:
        model = ReplacedKey

    developer = factory.SubFactory(DeveloperFactory)
    plain_key = factory.LazyFunction(keys.generate_key)
    key_hash = factory.LazyAttribute(lambda o: keys.hash_key(o.plain_key))
    key_prefix = factory.LazyAttribute(lambda o: keys.display_prefix(o.plain_key))
    replaced_at = factory.LazyFunction(timezone.now)


class PlanFactory(factory.django.DjangoModelFactory):
    """A plan (issue 16): every tool and no limit unless told otherwise."""

    class Meta:
        model = "accounts.Plan"

    code = factory.Sequence(lambda n: f"plan-{n}")
    name = factory.Sequence(lambda n: f"Plan {n}")


class UsageRollupFactory(factory.django.DjangoModelFactory):
    """One (organization, developer, tool, UTC day) of served calls: one call today unless told otherwise. Written
    directly, not from events (tests of the rollups' rebuild and check make them disagree this way)."""

    class Meta:
        model = UsageRollup

    developer = factory.SubFactory(DeveloperFactory)
    organization = factory.LazyAttribute(lambda o: o.developer.organization)
    tool_name = "whoami"
    day = factory.LazyFunction(lambda: timezone.now().astimezone(datetime.UTC).date())
    calls = 1
    errors = 0
    duration_ms = 1


class LegacyCustomerFactory(factory.django.DjangoModelFactory):
    """A row of the old system's `customers` table (which exists only where a test creates it)."""

    class Meta:
        model = LegacyCustomer

    id = factory.LazyFunction(uuid.uuid4)
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    stripe_customer_id = factory.Sequence(lambda n: f"cus_legacy{n:06d}")
    subscription_status = "active"
    created_at = factory.LazyFunction(timezone.now)


def _this_hour() -> datetime.datetime:
    return timezone.now().replace(minute=0, second=0, microsecond=0)


class MeterReportFactory(factory.django.DjangoModelFactory):
    """A pending meter event of the last full hour, for the organization's Stripe customer."""

    class Meta:
        model = MeterReport

    organization = factory.SubFactory(OrganizationFactory)
    interval_start = factory.LazyFunction(lambda: _this_hour() - datetime.timedelta(hours=1))
    interval_end = factory.LazyAttribute(lambda o: o.interval_start + datetime.timedelta(hours=1))
    identifier = factory.Sequence(lambda n: f"hotcross-test-{n}")
    event_name = "hotcross_calls"
    stripe_customer_id = factory.LazyAttribute(lambda o: o.organization.stripe_customer_id)
    value = 1
    timestamp = factory.LazyAttribute(lambda o: o.interval_end - datetime.timedelta(seconds=1))


class UsageBillingStateFactory(factory.django.DjangoModelFactory):
    """An organization billed by usage, first seen billable at the start of this hour, nothing planned yet."""

    class Meta:
        model = UsageBillingState

    organization = factory.SubFactory(OrganizationFactory)
    billing_since = factory.LazyFunction(_this_hour)
    planned_until = factory.LazyAttribute(lambda o: o.billing_since)


class ReportedEventFactory(factory.django.DjangoModelFactory):
    """An event id a developer's client reported (`POST /api/v1/usage`), kept to refuse it a second time."""

    class Meta:
        model = ReportedEvent

    developer = factory.SubFactory(DeveloperFactory)
    client_event_id = factory.Sequence(lambda n: f"event-{n}")


# --- oauth ------------------------------------------------------------------------------------------------------------


class ShadowUserFactory(factory.django.DjangoModelFactory):
    """A Django user as a developer's shadow user is made (`oauth.grants.shadow_user`): not staff, no
    usable password."""

    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"developer-test-{n}")
    password = factory.LazyFunction(lambda: make_password(None))
    is_staff = False
    is_superuser = False


class ClientFactory(factory.django.DjangoModelFactory):
    """An OAuth client as MCP clients register them: public, authorization code, a loopback redirect."""

    class Meta:
        model = Client

    name = factory.Sequence(lambda n: f"Client {n}")
    client_type = Client.CLIENT_PUBLIC
    authorization_grant_type = Client.GRANT_AUTHORIZATION_CODE
    redirect_uris = "http://127.0.0.1:9/cb"


class DeveloperAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeveloperAccount

    developer = factory.SubFactory(DeveloperFactory)
    user = factory.SubFactory(
        ShadowUserFactory, username=factory.LazyAttribute(lambda o: f"developer-{o.factory_parent.developer.pk}")
    )


class GrantFactory(factory.django.DjangoModelFactory):
    """A developer's grant to a client (live unless `revoked_at` is given)."""

    class Meta:
        model = Grant

    developer = factory.SubFactory(DeveloperFactory)
    client = factory.SubFactory(ClientFactory)


class SignInCodeFactory(factory.django.DjangoModelFactory):
    """An unused sign-in code for a developer's address, sent now, valid 10 minutes (only its hash is stored)."""

    class Meta:
        model = SignInCode

    developer = factory.SubFactory(DeveloperFactory)
    email = factory.LazyAttribute(lambda o: o.developer.email)
    email_key = factory.LazyAttribute(lambda o: o.email.lower())
    code_hash = factory.LazyFunction(lambda: secrets.token_hex(32))
    sent_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyAttribute(lambda o: o.sent_at + datetime.timedelta(minutes=10))


class SignInEventFactory(factory.django.DjangoModelFactory):
    """A counted sign-in step: a code made for an address, now."""

    class Meta:
        model = SignInEvent

    kind = SignInEvent.Kind.CODE
    email_key = factory.Sequence(lambda n: f"someone{n}@example.com")
    client_ip = "127.0.0.1"
    wrong = False
    created_at = factory.LazyFunction(timezone.now)


class SpentCodeFactory(factory.django.DjangoModelFactory):
    """An authorization code already exchanged for tokens (its hash)."""

    class Meta:
        model = SpentCode

    code_hash = factory.LazyFunction(lambda: secrets.token_hex(32))
    client = factory.SubFactory(ClientFactory)
    user = factory.SubFactory(ShadowUserFactory)


class InvitationFactory(factory.django.DjangoModelFactory):
    """A pending invitation to a member's seat, sent by an owner of the organization. `token` is set on the built
    instance (never stored: only its hash is), so tests can open the link."""

    class Meta:
        model = "accounts.Invitation"
        exclude = ("token",)

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    token = factory.LazyFunction(lambda: secrets.token_urlsafe(32))
    token_hash = factory.LazyAttribute(lambda o: hashlib.sha256(o.token.encode()).hexdigest())
    expires_at = factory.LazyFunction(lambda: timezone.now() + datetime.timedelta(days=7))


class AlertSentFactory(factory.django.DjangoModelFactory):
    """An alert mailed this month (80 % of the cap) to the organization's owners."""

    class Meta:
        model = "accounts.AlertSent"

    organization = factory.SubFactory(OrganizationFactory)
    kind = "cap_80"
    period = factory.LazyFunction(lambda: timezone.now().strftime("%Y-%m"))
    recipients = 1


class ThrottleEventFactory(factory.django.DjangoModelFactory):
    """One counted sign-up start from an address and a client address."""

    class Meta:
        model = "accounts.ThrottleEvent"

    kind = "signup"
    email_key = factory.Sequence(lambda n: f"someone{n}@example.com")
    client_ip = "192.0.2.1"
