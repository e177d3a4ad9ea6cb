"""The usage chart's data (selector) and layout (pure function)."""

import datetime

import pytest
from django.utils import timezone

from accounts import selectors
from accounts.admin.chart import PALETTE, usage_chart
from tests.factories import DeveloperFactory, OrganizationFactory, UsageEventFactory


@pytest.mark.django_db
def test_usage_per_developer_per_day_counts_calls_and_errors_in_the_window_only():
    org, other = OrganizationFactory(), OrganizationFactory()
    ada = DeveloperFactory(organization=org, email="ada@x.test")
    bob = DeveloperFactory(organization=other)
    now = timezone.now().replace(hour=12)
    UsageEventFactory(developer=ada, created_at=now)
    UsageEventFactory(developer=ada, created_at=now, ok=False)
    UsageEventFactory(developer=ada, created_at=now - datetime.timedelta(days=29))
    UsageEventFactory(developer=ada, created_at=now - datetime.timedelta(days=30))
    UsageEventFactory(developer=bob, created_at=now)
    first_day, rows = selectors.usage_per_developer_per_day(org, days=30, now=now)
    assert first_day == now.date() - datetime.timedelta(days=29)
    assert [(r["email"], r["day"], r["calls"], r["errors"]) for r in rows] == [
        ("ada@x.test", first_day, 1, 0),
        ("ada@x.test", now.date(), 2, 1),
    ]


def row(dev, day, calls, errors=0):
    return {"developer_id": dev, "email": f"{dev}@x.test", "day": day, "calls": calls, "errors": errors}


def test_bars_stack_per_developer_and_scale_to_a_round_maximum():
    first = datetime.date(2026, 1, 1)
    chart = usage_chart(first, [row("a", first, 30), row("b", first, 10), row("a", first + datetime.timedelta(1), 5)])
    assert chart.total_calls == 45
    assert [s.label for s in chart.legend] == ["a@x.test", "b@x.test"]
    day_one = [s for s in chart.segments if s.title.startswith("2026-01-01")]
    assert len(day_one) == 2
    # 40 calls on a 40 scale: the stacked bar fills the plot height exactly.
    assert sum(s.height for s in day_one) == pytest.approx(chart.plot_bottom - 10)
    assert chart.y_ticks[-1][1] == 40
    assert chart.x_labels[0][1] == "Jan 1"
    # Every bar, and the last day's label centred under it, stays inside the drawing.
    assert chart.x_labels[-1][1] == "Jan 30"
    assert chart.x_labels[-1][0] + 20 <= chart.width
    assert all(chart.left <= s.x and s.x + s.width <= chart.right for s in chart.segments)


def test_developers_beyond_the_palette_are_drawn_as_others():
    first = datetime.date(2026, 1, 1)
    rows = [row(f"d{i:02d}", first, 100 - i) for i in range(12)]
    chart = usage_chart(first, rows)
    assert len(chart.legend) == len(PALETTE)
    assert chart.legend[-1].label == "others"
    assert chart.legend[-1].calls == sum(100 - i for i in range(len(PALETTE) - 1, 12))
    assert len([s for s in chart.segments]) == len(PALETTE)  # one segment per legend entry on that day


def test_no_usage_is_an_empty_chart():
    chart = usage_chart(datetime.date(2026, 1, 1), [])
    assert chart.empty and chart.segments == [] and chart.y_ticks == []
