"""What the conversion finds and would do: the rows that stop it (with how to fix each kind), and the plan that
`manage.py orgs legacy-report` prints before anyone migrates. Read-only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q

from accounts.choices import SubscriptionStatus, best_status
from accounts.exceptions import AccountsError
from accounts.legacy.source import Legacy, uuid_text

# What each finding means and how to fix it, in the order the report lists them.
FIXES: dict[str, tuple[str, str]] = {
    "duplicate_email": (
        "Customers whose emails are equal ignoring case and surrounding spaces (developer emails are unique).",
        "Give each of them a distinct email, or delete the rows that are duplicates: "
        "UPDATE customers SET email = '…' WHERE id = '…';",
    ),
    "email_taken": (
        "The email already belongs to an existing developer (made by hand, or converted from another customer).",
        "Change the customer's email, or remove that developer (manage.py orgs list-devs shows them).",
    ),
    "missing_email": (
        "The email is empty.",
        "Set the customer's email: UPDATE customers SET email = '…' WHERE id = '…';",
    ),
    "invalid_email": (
        "The email has no @.",
        "Correct the customer's email: UPDATE customers SET email = '…' WHERE id = '…';",
    ),
    "invalid_status": (
        "The subscription status is not one of Stripe's after trimming and lower-casing "
        f"({', '.join(SubscriptionStatus.values)}).",
        "Set it to one of those, or to NULL (converted as incomplete): "
        "UPDATE customers SET subscription_status = 'canceled' WHERE id = '…';",
    ),
    "duplicate_key": (
        "Customers with the same api_key_hash (a key can belong to one developer only).",
        "Keep the key on one of them and set api_key_hash and api_key_prefix to NULL on the others; "
        "after the migration give those developers a new key with manage.py orgs rotate-key.",
    ),
    "key_taken": (
        "The api_key_hash already belongs to an existing developer.",
        "Set the customer's api_key_hash and api_key_prefix to NULL (issue a new key after the migration), "
        "or remove that developer.",
    ),
    "invalid_key_hash": (
        "The api_key_hash is not a SHA-256 hex digest (64 characters 0-9 a-f), so no key can match it.",
        "Correct it, or set api_key_hash and api_key_prefix to NULL and issue a new key after the migration "
        "(manage.py orgs rotate-key).",
    ),
    "stripe_customer_taken": (
        "An organization with this Stripe customer id already exists.",
        "If it was created by hand, clear the Stripe id of one of the two. If it was converted earlier (its customers "
        "were added since), roll back with manage.py migrate accounts 0001_initial and migrate again, so all the "
        "customers of this Stripe customer are converted together.",
    ),
    "too_long": (
        "A value is longer than any valid one can be (an email over 254 characters, a Stripe id over 255).",
        "Correct it in customers (the detail names the column and the limit).",
    ),
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One customer row that stops the conversion, and why."""

    customer_id: str
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"customer_id": self.customer_id, "code": self.code, "detail": self.detail}


class LegacyConversionError(AccountsError):
    """Rows of `customers` that cannot be converted; nothing was written."""

    code = "legacy_conversion_refused"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(describe_problems(problems, written=False))


class LegacyReverseError(AccountsError):
    """Rows created after the conversion still point at converted ones; nothing was deleted."""

    code = "legacy_reverse_refused"


def describe_problems(problems: list[Problem], *, written: bool | None = None) -> str:
    """Every problem, grouped by kind, each kind with its fix (the migration's error and the report's text)."""
    customers = len({p.customer_id for p in problems})
    head = f"{customers} customer{'s' if customers != 1 else ''} cannot be converted"
    if written is False:
        head = f"The legacy conversion stopped before writing anything: {head}."
    else:
        head = f"{head} (the migration would stop before writing anything)."
    lines = [
        head,
        "Fix these rows of the customers table, check with `manage.py orgs legacy-report`, then run "
        "`manage.py migrate` again.",
    ]
    by_code: dict[str, list[Problem]] = defaultdict(list)
    for problem in problems:
        by_code[problem.code].append(problem)
    for code in [*FIXES, *sorted(set(by_code) - set(FIXES))]:
        if code not in by_code:
            continue
        what, fix = FIXES.get(code, ("", ""))
        lines += ["", f"{code}: {what}", f"  Fix: {fix}"]
        lines += [f"  - customer {p.customer_id}: {p.detail}" for p in by_code[code]]
    return "\n".join(lines)


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
    from accounts.legacy.validation import find_problems

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


__all__ = ["FIXES", "LegacyConversionError", "LegacyPlan", "LegacyReverseError", "Merge", "Problem", "plan"]
