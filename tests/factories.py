"""factory-boy factories, one per model of ours. Developers get a real key: `DeveloperFactory.plain_key` is the key to
present. Usage events belong to their developer's organization unless told otherwise."""

from __future__ import annotations

import factory
from django.utils import timezone

from accounts import keys
from accounts.models import Developer, Organization, PricingModel, ReplacedKey, SubscriptionStatus, UsageEvent


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
