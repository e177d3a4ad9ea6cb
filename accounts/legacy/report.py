"""What the conversion would do: the plan that `manage.py orgs legacy-report` prints before anyone migrates, with the
rows that stop it (`accounts.legacy.problems`), and the errors that refuse a conversion or its reverse. Read-only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q

from accounts.choices import best_status
from accounts.exceptions import AccountsError
from accounts.legacy.problems import Problem, describe_problems
from accounts.legacy.source import Legacy, uuid_text
from accounts.legacy.validation import find_problems


class LegacyConversionError(AccountsError):
    """Rows of `customers` that cannot be converted; nothing was written."""

    code = "legacy_conversion_refused"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(describe_problems(problems, written=False))


class LegacyReverseError(AccountsError):
    """Rows created after the conversion still point at converted ones; nothing was deleted."""

    code = "legacy_reverse_refused"


@dataclass
class Merge:
    stripe_customer_id: str
    customer_ids: list[str]
    subscription_status: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "stripe_customer_id": self.stripe_customer_id,
            "customers": len(self.customer_ids),
            "customer_ids": self.customer_ids,
            "subscription_status": self.subscription_status,
        }


@dataclass
class LegacyPlan:
    """What the conversion would do now (read-only)."""

    table_exists: bool
    customers: int = 0
    already_converted: int = 0
    organizations_to_create: int = 0
    developers_to_create: int = 0
    merges: list[Merge] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table_exists": self.table_exists,
            "customers": self.customers,
            "already_converted": self.already_converted,
            "organizations_to_create": self.organizations_to_create,
            "developers_to_create": self.developers_to_create,
            "merges": [m.as_dict() for m in self.merges],
            "problems": [p.as_dict() for p in self.problems],
            "blocking_customers": len({p.customer_id for p in self.problems}),
        }

    def describe(self) -> str:
        if not self.table_exists:
            return "No legacy customers table: the migration has nothing to convert."
        lines = [
            f"Customers found:               {self.customers}",
            f"Already converted:             {self.already_converted}",
            f"Organizations to create:       {self.organizations_to_create}",
            f"Developers to create:          {self.developers_to_create}",
            f"Merges (shared Stripe id):     {len(self.merges)}",
        ]
        for merge in self.merges:
            lines.append(
                f"  - {merge.stripe_customer_id}: {len(merge.customer_ids)} customers → one organization "
                f"({merge.subscription_status}, {len(merge.customer_ids)} seats): {', '.join(merge.customer_ids)}"
            )
        lines.append("")
        lines.append(describe_problems(self.problems) if self.problems else "No problems: the migration can run.")
        return "\n".join(lines)


def plan(connection: Any, apps: Any) -> LegacyPlan:
    """What the conversion would create and what would stop it. Read-only."""
    legacy = Legacy.from_apps(apps, connection)
    if not legacy.customers_table_exists():
        return LegacyPlan(table_exists=False)
    pending = legacy.pending()
    counts = pending.aggregate(
        developers=Count("pk"),
        singles=Count("pk", filter=Q(stripe_id__isnull=True)),
        groups=Count("stripe_id", distinct=True),
    )
    merged_ids: dict[str, list[str]] = defaultdict(list)
    merged_statuses: dict[str, list[str]] = defaultdict(list)
    shared = pending.filter(stripe_id__isnull=False).values("stripe_id").annotate(n=Count("pk")).filter(n__gt=1)
    for stripe_id, customer_id, status in pending.filter(stripe_id__in=shared.values("stripe_id")).values_list(
        "stripe_id", "customer_id", "status"
    ):
        merged_ids[stripe_id].append(uuid_text(customer_id))
        merged_statuses[stripe_id].append(status)
    merges = [
        Merge(stripe_id, sorted(merged_ids[stripe_id]), best_status(merged_statuses[stripe_id]))
        for stripe_id in sorted(merged_ids)
    ]
    customers = legacy.customers().count()
    return LegacyPlan(
        table_exists=True,
        customers=customers,
        already_converted=customers - counts["developers"],
        organizations_to_create=counts["singles"] + counts["groups"],
        developers_to_create=counts["developers"],
        merges=merges,
        problems=find_problems(legacy),
    )


__all__ = ["LegacyConversionError", "LegacyPlan", "LegacyReverseError", "Merge", "plan"]
