"""The accounts app's models: organizations (the paying entity, one Stripe customer), their developers (one current key
each) and usage, in modules by subject (`plans`, `organizations`, `members`, `usage`, `legacy`,
`usage_billing`). Import them from
here (`from accounts.models import Developer`).

Fields, constraints, indexes and small derived properties only; every workflow lives in `accounts.services`.
"""

from accounts.choices import (
    MAX_SEATS,
    STATUS_STANDING,
    AlertKind,
    AtCap,
    MeteredBilling,
    PricingModel,
    Role,
    SubscriptionStatus,
)
from accounts.models.legacy import LegacyCustomer
from accounts.models.members import AlertSent, Invitation, InvitationQuerySet, ThrottleEvent
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
    "AlertKind",
    "AlertSent",
    "AtCap",
    "Developer",
    "DeveloperQuerySet",
    "Invitation",
    "InvitationQuerySet",
    "LegacyCustomer",
    "MeterReport",
    "MeterReportState",
    "MeteredBilling",
    "Organization",
    "OrganizationQuerySet",
    "Plan",
    "PricingModel",
    "ReplacedKey",
    "Role",
    "SubscriptionStatus",
    "ThrottleEvent",
    "UsageBillingState",
    "UsageEvent",
    "UsageRollup",
]
