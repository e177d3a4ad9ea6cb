"""What stops the conversion: a `Problem` (one customer row and why), what each kind means and how to fix it
(`FIXES`, in the order reports list them), and the text that describes them (the migration's error, the report)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from accounts.choices import SubscriptionStatus

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
