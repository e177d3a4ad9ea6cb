"""How much of its monthly cap an organization has used (issue 16): calls per calendar month (UTC), from the daily
usage rollups.

- `calls_this_month` / `calls_in_month`: exact, one indexed query (the reported-usage API, tests, pages);
- `amonthly_calls`: the hot path (every capped `tools/call`), per process and at most a second old (`MonthlyCalls`);
- `with_monthly_use`, `at_least_percent_of_cap`, `cap_state`: the organization list, its page and the dashboard.

The cap itself (calls per seat × seats) is `accounts.plans.cap`, in SQL `accounts.plans.cap_expression`.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

from django.db.models import Case, ExpressionWrapper, F, IntegerField, OuterRef, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Plan, UsageRollup
from accounts.plans import cap_expression, default_plan_code, month_start
from infra.db import BOOKKEEPING, run_in_pool

CAP_WARNING_PERCENT = 80
MONTHLY_REFRESH_SECONDS = 1.0


def calls_this_month(organization_id: Any, now: datetime.datetime | None = None) -> int:
    """The organization's served calls this calendar month (UTC), from the daily usage rollups: one indexed query."""
    since = month_start(now or timezone.now()).date()
    total = UsageRollup.objects.filter(organization_id=organization_id, day__gte=since).aggregate(n=Sum("calls"))["n"]
    return int(total or 0)


def calls_in_month(organization_id: Any, start: datetime.datetime) -> int:
    """The organization's calls in the UTC month that begins at `start`, from the daily rollups."""
    end = month_start(start + datetime.timedelta(days=32))
    total = UsageRollup.objects.filter(
        organization_id=organization_id, day__gte=start.date(), day__lt=end.date()
    ).aggregate(n=Sum("calls"))["n"]
    return int(total or 0)


# --- on the hot path -------------------------------------------------------------------------------------------------


class MonthlyCalls:
    """Each organization's calls this month, per process: read from the rollups at most once a second per
    organization, plus the calls this process let through since (`count`). How exact: a worker misses the calls other
    workers served in the last second and those still in the metering buffer (≤ `HOTCROSS_MCP_METERING_FLUSH_SECONDS`),
    so with W workers a cap can be passed by at most about W × (calls per second) — small against a monthly cap."""

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[float, int]] = {}  # organization id → (read at, calls)
        self._lock = threading.Lock()

    def fresh(self, organization_id: Any) -> int | None:
        entry = self._entries.get(organization_id)
        if entry is None or time.monotonic() - entry[0] > MONTHLY_REFRESH_SECONDS:
            return None
        return entry[1]

    def put(self, organization_id: Any, calls: int) -> int:
        with self._lock:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[organization_id] = (time.monotonic(), calls)
        return calls

    def count(self, organization_id: Any) -> None:
        with self._lock:
            entry = self._entries.get(organization_id)
            if entry is not None:
                self._entries[organization_id] = (entry[0], entry[1] + 1)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


monthly_calls = MonthlyCalls()


async def amonthly_calls(organization_id: Any) -> int:
    """The organization's calls this month as this process knows them (≤ 1 s old); may read the rollups on the
    bookkeeping threads (`DatabaseUnavailable` when the database cannot be reached)."""
    known = monthly_calls.fresh(organization_id)
    if known is not None:
        return known
    return monthly_calls.put(organization_id, await run_in_pool(BOOKKEEPING, calls_this_month, organization_id))


# --- on pages: organizations with their use --------------------------------------------------------------------------


def with_monthly_use(queryset: Any, now: datetime.datetime | None = None) -> Any:
    """Organizations annotated with `calls_this_month` and `monthly_cap` (None: uncapped; the default plan's for those
    without a plan of their own): one query with the page, from the rollups."""
    since = month_start(now or timezone.now()).date()
    calls = (
        UsageRollup.objects.filter(organization=OuterRef("pk"), day__gte=since)
        .order_by()
        .values("organization")
        .annotate(n=Sum("calls"))
        .values("n")
    )
    code = default_plan_code()
    default = Plan.objects.filter(code=code).first() if code else None
    default_per_seat = default.monthly_calls_per_seat if default is not None else None
    per_seat = Case(
        When(plan__isnull=True, then=Value(default_per_seat, output_field=IntegerField())),
        default=F("plan__monthly_calls_per_seat"),
        output_field=IntegerField(),
    )
    return queryset.annotate(
        calls_this_month=Coalesce(Subquery(calls), Value(0)),
        monthly_cap=cap_expression(per_seat, F("max_seats")),
    )


def at_least_percent_of_cap(queryset: Any, percent: int) -> Any:
    """Those of `with_monthly_use(...)` that have used `percent` % of their monthly cap or more (capped ones only)."""
    return queryset.annotate(
        _use_x100=ExpressionWrapper(F("calls_this_month") * 100, output_field=IntegerField())
    ).filter(monthly_cap__isnull=False, _use_x100__gte=F("monthly_cap") * percent)


def cap_state(calls: int, cap: int | None) -> str:
    """ "" (uncapped or under 80 %), "warning" (≥ 80 %) or "reached" (≥ 100 %)."""
    if cap is None:
        return ""
    if calls >= cap:
        return "reached"
    if calls * 100 >= cap * CAP_WARNING_PERCENT:
        return "warning"
    return ""
