"""The day charts: the usage chart's data (selector), and the layout (pure functions) of both charts."""

import datetime
import re

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from accounts import selectors
from accounts.admin.chart import OTHERS_COLOR, PALETTE, calls_chart, usage_chart
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


@pytest.mark.django_db
def test_rows_carry_each_developers_place_in_seat_order():
    org = OrganizationFactory()
    now = timezone.now()
    zed = DeveloperFactory(organization=org, email="zed@x.test", seat_claimed_at=now - datetime.timedelta(days=9))
    amy = DeveloperFactory(organization=org, email="amy@x.test", seat_claimed_at=now - datetime.timedelta(days=1))
    UsageEventFactory(developer=amy, created_at=now)
    UsageEventFactory(developer=zed, created_at=now)
    _, rows = selectors.usage_per_developer_per_day(org, now=now)
    assert sorted((r["seat"], r["email"]) for r in rows) == [(0, "zed@x.test"), (1, "amy@x.test")]


def seat_row(dev, seat, day, calls):
    return {**row(dev, day, calls), "seat": seat}


def test_legend_and_stacks_follow_seat_order_not_calls_or_names():
    first = datetime.date(2026, 1, 1)
    # Seat order: zed, amy, bob. By calls: bob, amy, zed; by name: amy, bob, zed.
    rows = [seat_row("amy", 1, first, 20), seat_row("bob", 2, first, 30), seat_row("zed", 0, first, 10)]
    chart = usage_chart(first, rows)
    assert [s.label for s in chart.legend] == ["zed@x.test", "amy@x.test", "bob@x.test"]
    # Each bar stacks bottom-up in the legend's order, with the legend's colours.
    bottom_up = sorted(chart.segments, key=lambda s: -s.y)
    assert [s.title.split(" · ")[1].split(":")[0] for s in bottom_up] == [s.label for s in chart.legend]
    assert [s.color for s in bottom_up] == [s.color for s in chart.legend] == list(PALETTE[:3])


def test_beyond_the_palette_the_busiest_keep_a_colour_listed_in_seat_order_and_others_on_top():
    first = datetime.date(2026, 1, 1)
    # Twelve developers; the later the seat, the busier: the last seven in seat order are named.
    rows = [seat_row(f"d{i:02d}", i, first, 10 + i) for i in range(12)]
    chart = usage_chart(first, rows)
    assert [s.label for s in chart.legend] == [f"d{i:02d}@x.test" for i in range(5, 12)] + ["others"]
    assert max(chart.segments, key=lambda s: -s.y).color == OTHERS_COLOR  # on top


def test_the_chart_is_drawn_to_fill_its_box():
    chart = usage_chart(datetime.date(2026, 1, 1), [row("a", datetime.date(2026, 1, 1), 3)])
    html = render_to_string("admin/hotcross/day_chart.svg.html", {"chart": chart, "chart_id": "c", "title": "t"})
    svg = re.search(r"<svg[^>]*>", html).group(0)
    assert f'viewBox="0 0 {chart.width} {chart.height}"' in svg and 'width="100%"' in svg
    assert "height=" not in svg  # the height follows the width (the viewBox's proportions)


def test_calls_chart_stacks_errors_on_the_calls_that_went_well():
    first = datetime.date(2026, 1, 1)
    days = [selectors.DayCalls(first, 10, 2), selectors.DayCalls(first + datetime.timedelta(days=3), 4, 0)]
    chart = calls_chart(first, days, width=800)
    assert [(s.label, s.calls) for s in chart.legend] == [("ok", 12), ("errors", 2)]
    assert (chart.total_calls, chart.total_errors, chart.width) == (14, 2, 800)
    day_one = sorted((s for s in chart.segments if s.title.startswith("2026-01-01")), key=lambda s: -s.y)
    assert [s.color for s in day_one] == [chart.legend[0].color, chart.legend[1].color]
    assert len(chart.segments) == 3  # no empty "errors" segment on the fourth day
    assert all(chart.left <= s.x and s.x + s.width <= chart.right for s in chart.segments)
