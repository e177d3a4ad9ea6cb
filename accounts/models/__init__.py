"""The accounts app's models: organizations (the paying entity, one Stripe customer), their developers (one current key
each) and usage, in modules by subject (`plans`, `organizations`, `usage`, `legacy`, `usage_billing`). Import them from
here (`from accounts.models import Developer`).

Fields, constraints, indexes and small derived properties only; every workflow lives in `accounts.services`.
"""

from accounts.choices import MAX_SEATS, STATUS_STANDING, AtCap, MeteredBilling, PricingModel, SubscriptionStatus
from accounts.models.legacy import LegacyCustomer
from accounts.models.organizations import (
    SEAT_HOLDER,
    Developer,
    DeveloperQuerySet,
    Organization,
    OrganizationQuerySet,
    ReplacedKey,
)
from accounts.models.plans import Plan
from accounts.models.usage import UsageEvent, UsageRollup
from accounts.models.usage_billing import MeterReport, MeterReportState, UsageBillingState

__all__ = [
    "MAX_SEATS",
    "SEAT_HOLDER",
    "STATUS_STANDING",
    "AtCap",
    "Developer",
    "DeveloperQuerySet",
    "LegacyCustomer",
    "MeterReport",
    "MeterReportState",
    "MeteredBilling",
    "Organization",
    "OrganizationQuerySet",
    "Plan",
    "PricingModel",
    "ReplacedKey",
    "SubscriptionStatus",
    "UsageBillingState",
    "UsageEvent",
    "UsageRollup",
]
