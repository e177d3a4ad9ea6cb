"""Geometry of the back office's day charts: one bar per day, stacked per series, drawn as SVG on the server.

Pure layout (no ORM). `day_chart` lays out any series of counts per day; two shapes use it:

- `usage_chart`: an organization's calls per developer per day (the rows of `selectors.usage_per_developer_per_day`),
  stacked in seat order, on the organization's page;
- `calls_chart`: every organization's calls per day, ok and errors (`selectors.Dashboard.per_day`), on the
  dashboard.

`admin/hotcross/day_chart.svg.html` draws a `Chart` at the full width of its box (the SVG scales with its viewBox). No
JavaScript, no chart library, no CDN.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Colour-blind-safe palette (Okabe–Ito); developers beyond it are drawn together as "others".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
OTHERS_COLOR = "#999999"
SERVED_COLOR = PALETTE[0]
FAILED_COLOR = PALETTE[5]

# The drawing's own units: the SVG is drawn 100 % wide and scales these (text included) to the box it is in, so the
# width is about the box's width in pixels on a laptop screen (text then stays near its 11 px).
WIDTH = 1100
HEIGHT = 240
LEFT = 44  # room for the y-axis labels
RIGHT = 24  # room for half of the last day's label
BOTTOM = 28  # room for the x-axis labels
TOP = 10


@dataclass
class Series:
    label: str
    color: str
    calls: int = 0
    errors: int = 0


@dataclass
class Segment:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass
class Chart:
    first_day: datetime.date
    last_day: datetime.date
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    plot_bottom: int = HEIGHT - BOTTOM
    segments: list[Segment] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, int]] = field(default_factory=list)
    legend: list[Series] = field(default_factory=list)  # in stack order: the first is at the bottom of each bar
    total_calls: int = 0
    total_errors: int = 0

    @property
    def empty(self) -> bool:
        return self.total_calls == 0


def day_chart(
    first_day: datetime.date,
    values: Iterable[tuple[datetime.date, Series, int]],
    legend: Sequence[Series],
    *,
    days: int = 30,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """Lay out `values` ((day, series, count), several per day and series allowed) as one bar per day of the `days`
    from `first_day`, each bar stacked bottom-up in the order of `legend`. Totals are the caller's (`Series`)."""
    chart = Chart(
        first_day=first_day,
        last_day=first_day + datetime.timedelta(days=days - 1),
        width=width,
        height=height,
        right=width - RIGHT,
        plot_bottom=height - BOTTOM,
        legend=list(legend),
    )
    place = {id(series): index for index, series in enumerate(chart.legend)}
    per_day: dict[datetime.date, dict[int, int]] = {}
    for day, series, count in values:
        stack = per_day.setdefault(day, {})
        stack[place[id(series)]] = stack.get(place[id(series)], 0) + count
    peak = max((sum(stack.values()) for stack in per_day.values()), default=0)
    scale_max = _nice_ceiling(peak)
    plot_height = chart.plot_bottom - TOP
    slot = (width - LEFT - RIGHT) / days
    bar_width = max(slot * 0.75, 1.0)
    for index in range(days):
        day = first_day + datetime.timedelta(days=index)
        x = LEFT + index * slot + (slot - bar_width) / 2
        if index % 5 == 0 or index == days - 1:
            chart.x_labels.append((x + bar_width / 2, f"{day:%b} {day.day}"))
        y = float(chart.plot_bottom)
        for position, count in sorted(per_day.get(day, {}).items()):
            if not count:
                continue
            series = chart.legend[position]
            bar_height = plot_height * count / scale_max if scale_max else 0
            y -= bar_height
            chart.segments.append(
                Segment(
                    x=round(x, 2),
                    y=round(y, 2),
                    width=round(bar_width, 2),
                    height=round(bar_height, 2),
                    color=series.color,
                    title=f"{day:%Y-%m-%d} · {series.label}: {count} call{'s' if count != 1 else ''}",
                )
            )
    if scale_max:
        for value in sorted({scale_max * step // 4 for step in range(5)}):
            chart.y_ticks.append((round(chart.plot_bottom - plot_height * value / scale_max, 2), value))
    return chart


def usage_chart(first_day: datetime.date, rows: list[dict], *, days: int = 30) -> Chart:
    """An organization's calls per developer per day: `rows` are {developer_id, email, day, calls, errors} and
    optionally `seat` (the developer's place in seat order). Bars stack, and the legend lists, the developers in seat
    order (then by email); beyond the palette, the developers with the fewest calls are drawn together as "others",
    on top."""
    totals: dict[object, Series] = {}
    order: dict[object, tuple] = {}
    for row in rows:
        series = totals.setdefault(row["developer_id"], Series(label=row["email"], color=OTHERS_COLOR))
        order.setdefault(row["developer_id"], (row.get("seat", 0), row["email"]))
        series.calls += row["calls"]
        series.errors += row["errors"]
    by_calls = sorted(totals, key=lambda key: (-totals[key].calls, order[key]))
    named = set(by_calls[: len(PALETTE) - 1] if len(by_calls) > len(PALETTE) else by_calls)
    stacked = sorted(named, key=lambda key: order[key])
    for key, color in zip(stacked, PALETTE, strict=False):
        totals[key].color = color
    others = Series(label="others", color=OTHERS_COLOR)
    for key, series in totals.items():
        if key not in named:
            others.calls += series.calls
            others.errors += series.errors
    legend = [totals[key] for key in stacked] + ([others] if others.calls else [])
    values = (
        (row["day"], totals[row["developer_id"]] if row["developer_id"] in named else others, row["calls"])
        for row in rows
    )
    chart = day_chart(first_day, values, legend, days=days)
    chart.total_calls = sum(series.calls for series in totals.values())
    chart.total_errors = sum(series.errors for series in totals.values())
    return chart


def calls_chart(first_day: datetime.date, per_day: Iterable, *, days: int = 30, width: int = WIDTH) -> Chart:
    """Calls per day across every organization, ok (bottom) and errors (top): `per_day` items have `day`, `calls`
    and `errors` (`selectors.DayCalls`)."""
    per_day = list(per_day)
    served = Series(label="ok", color=SERVED_COLOR)
    failed = Series(label="errors", color=FAILED_COLOR)
    values = []
    for item in per_day:
        served.calls += item.calls - item.errors
        failed.calls += item.errors
        failed.errors += item.errors
        values += [(item.day, served, item.calls - item.errors), (item.day, failed, item.errors)]
    chart = day_chart(first_day, values, [served, failed], days=days, width=width)
    chart.total_calls = served.calls + failed.calls
    chart.total_errors = failed.errors
    return chart


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 4, 5, 10 × 10ⁿ at or above `value`, so y-axis ticks at quarters stay readable."""
    if value <= 0:
        return 0
    magnitude = 1
    while True:
        for step in (1, 2, 4, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10
