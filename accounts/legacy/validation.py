"""Every pending customer that would stop the conversion, found with a few set-based queries and no writes.

Column limits are read from the models of the registry in use (the historical ones in a migration): a value is
refused only where the new column cannot hold it. Where a limit was only a choice of ours (names, the key's display
prefix), the column is unbounded and nothing is refused for its length.
"""

from __future__ import annotations

from collections import defaultdict

from django.db.models import BooleanField, Count, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, Length, Lower

from accounts.choices import SubscriptionStatus
from accounts.legacy.problems import FIXES, Problem
from accounts.legacy.source import Legacy, uuid_text


def find_problems(legacy: Legacy) -> list[Problem]:
    pending = legacy.pending()
    problems = [*_row_problems(legacy, pending), *_duplicates(pending), *_collisions(legacy, pending)]
    order = list(FIXES)
    problems.sort(key=lambda p: (order.index(p.code) if p.code in order else len(order), p.customer_id))
    return problems


def _row_problems(legacy: Legacy, pending: QuerySet) -> list[Problem]:
    """Faults of single rows, in one scan."""
    checks: dict[str, Q] = {
        "missing_email": Q(norm_email=""),
        "invalid_email": ~Q(norm_email="") & ~Q(norm_email__contains="@"),
        "invalid_status": ~Q(status__in=SubscriptionStatus.values),
        "invalid_key_hash": Q(api_key_hash__isnull=False) & (~Q(hash_length=64) | Q(api_key_hash__regex="[^0-9a-f]")),
    }
    lengths = {}
    for column, value, model, field in (
        ("email", F("norm_email"), legacy.developer, "email"),
        ("first_name", F("first_name"), legacy.developer, "first_name"),
        ("last_name", F("last_name"), legacy.developer, "last_name"),
        ("api_key_prefix", F("api_key_prefix"), legacy.developer, "api_key_prefix"),
        ("stripe_customer_id", F("stripe_id"), legacy.organization, "stripe_customer_id"),
        ("organization name", Coalesce(F("company_name"), F("norm_email")), legacy.organization, "name"),
    ):
        limit = legacy.limit(model, field)
        if limit is not None:
            lengths[f"length_{len(lengths)}"] = Length(value)
            checks[f"too_long:{column}:{limit}"] = Q(**{f"length_{len(lengths) - 1}__gt": limit})
    flags = {
        f"flag_{i}": ExpressionWrapper(condition, output_field=BooleanField())
        for i, condition in enumerate(checks.values())
    }
    any_fault = Q()
    for condition in checks.values():
        any_fault |= condition
    rows = (
        pending.annotate(hash_length=Length("api_key_hash"), **lengths)
        .filter(any_fault)
        .annotate(**flags)
        .order_by("norm_email", "customer_id")
        .values_list("customer_id", "norm_email", "subscription_status", *flags)
    )
    problems = []
    for customer_id, email, raw_status, *hits in rows:
        for key, hit in zip(checks, hits, strict=True):
            if not hit:
                continue
            code, _, rest = key.partition(":")
            if code == "invalid_status":
                detail = f"subscription_status {raw_status!r}"
            elif code == "too_long":
                column, _, limit = rest.rpartition(":")
                detail = (
                    "the organization name (company, or the email when it has none) "
                    if column == "organization name"
                    else f"{column} "
                ) + f"is longer than {limit} characters"
            elif code == "invalid_key_hash":
                detail = "api_key_hash is not 64 lower-case hex digits"
            else:
                detail = f"email {email!r}"
            problems.append(Problem(uuid_text(customer_id), code, detail))
    return problems


def _duplicates(pending: QuerySet) -> list[Problem]:
    """Two pending customers that would collide on a unique column of developers."""
    problems = []
    for code, column in (("duplicate_email", "norm_email"), ("duplicate_key", "api_key_hash")):
        shared = (
            pending.filter(**{f"{column}__isnull": False})
            .exclude(**{column: ""})
            .values(column)
            .annotate(n=Count("pk"))
            .filter(n__gt=1)
            .values(column)
        )
        groups: dict[str, list[str]] = defaultdict(list)
        for value, customer_id in (
            pending.filter(**{f"{column}__in": shared})
            .order_by(column, "customer_id")
            .values_list(column, "customer_id")
        ):
            groups[value].append(uuid_text(customer_id))
        for value, ids in groups.items():
            what = f"email {value!r}" if column == "norm_email" else "the same api_key_hash"
            for customer_id in ids:
                others = ", ".join(i for i in ids if i != customer_id)
                problems.append(Problem(customer_id, code, f"{what} as customer {others}"))
    return problems


def _collisions(legacy: Legacy, pending: QuerySet) -> list[Problem]:
    """Collisions with rows created outside the conversion (or by an earlier one); none while the tables are empty."""
    if not legacy.targets_exist():
        return []
    developers = legacy.developer._default_manager.order_by()
    organizations = legacy.organization._default_manager.order_by()
    candidates: list[tuple[str, QuerySet, str, str]] = []
    if developers.exists():
        candidates += [
            (
                "email_taken",
                developers.annotate(key=Lower("email")).filter(key=OuterRef("norm_email")),
                "email",
                "email",
            ),
            ("key_taken", developers.filter(api_key_hash=OuterRef("api_key_hash")), "email", "key"),
        ]
    if organizations.exists():
        candidates.append(
            ("stripe_customer_taken", organizations.filter(stripe_customer_id=OuterRef("stripe_id")), "name", "")
        )
    problems = []
    for code, others, label, what in candidates:
        rows = (
            pending.annotate(other_id=Subquery(others.values("pk")[:1]), other_label=Subquery(others.values(label)[:1]))
            .filter(other_id__isnull=False)
            .values_list("customer_id", "other_id", "other_label")
        )
        for customer_id, other_id, other_label in rows:
            if code == "stripe_customer_taken":
                detail = f"organization {other_label!r} ({uuid_text(other_id)}) already has this Stripe customer id"
            else:
                detail = f"developer {other_label} ({uuid_text(other_id)}) already has this {what}"
            problems.append(Problem(uuid_text(customer_id), code, detail))
    return problems
