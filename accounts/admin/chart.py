"""Geometry of the organization page's usage chart: calls per day, stacked per developer, drawn as SVG on the server.

Pure layout (no ORM): `usage_chart` turns the rows of `selectors.usage_per_developer_per_day` into bars, segments
and a legend that `admin/accounts/organization/usage_chart.html` draws. No JavaScript, no chart library, no CDN.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

# Colour-blind-safe palette (Okabe–Ito); developers beyond it are drawn together as "others".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
OTHERS_COLOR = "#999999"

WIDTH = 760
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
    legend: list[Series] = field(default_factory=list)
    total_calls: int = 0
    total_errors: int = 0

    @property
    def empty(self) -> bool:
        return self.total_calls == 0


def usage_chart(first_day: datetime.date, rows: list[dict], *, days: int = 30) -> Chart:
    """Lay out `rows` ({developer_id, email, day, calls, errors}) as one stacked bar per day."""
    chart = Chart(first_day=first_day, last_day=first_day + datetime.timedelta(days=days - 1))
    totals: dict[object, Series] = {}
    for row in rows:
        series = totals.setdefault(row["developer_id"], Series(label=row["email"], color=OTHERS_COLOR))
        series.calls += row["calls"]
        series.errors += row["errors"]
    ranked = sorted(totals.items(), key=lambda item: (-item[1].calls, item[1].label))
    named = dict(ranked[: len(PALETTE) - 1]) if len(ranked) > len(PALETTE) else dict(ranked)
    for (_, series), color in zip(ranked, PALETTE, strict=False):
        series.color = color
    others = Series(label="others", color=OTHERS_COLOR)
    for developer_id, series in ranked:
        if developer_id not in named:
            others.calls += series.calls
            others.errors += series.errors
    chart.legend = [*named.values(), *([others] if others.calls else [])]
    chart.total_calls = sum(s.calls for s in totals.values())
    chart.total_errors = sum(s.errors for s in totals.values())

    per_day: dict[datetime.date, list[tuple[Series, int]]] = {}
    for row in rows:
        series = named.get(row["developer_id"], others)
        per_day.setdefault(row["day"], []).append((series, row["calls"]))
    day_totals = {day: sum(calls for _, calls in parts) for day, parts in per_day.items()}
    peak = max(day_totals.values(), default=0)
    scale_max = _nice_ceiling(peak)
    plot_height = chart.plot_bottom - TOP
    slot = (WIDTH - LEFT - RIGHT) / days
    bar_width = max(slot * 0.75, 1.0)
    for index in range(days):
        day = first_day + datetime.timedelta(days=index)
        x = LEFT + index * slot + (slot - bar_width) / 2
        if index % 5 == 0 or index == days - 1:
            chart.x_labels.append((x + bar_width / 2, f"{day:%b} {day.day}"))
        y = float(chart.plot_bottom)
        merged: dict[str, tuple[Series, int]] = {}
        for series, calls in per_day.get(day, []):
            seen = merged.get(series.label)
            merged[series.label] = (series, calls + (seen[1] if seen else 0))
        for series, calls in merged.values():
            height = plot_height * calls / scale_max if scale_max else 0
            y -= height
            chart.segments.append(
                Segment(
                    x=round(x, 2),
                    y=round(y, 2),
                    width=round(bar_width, 2),
                    height=round(height, 2),
                    color=series.color,
                    title=f"{day:%Y-%m-%d} · {series.label}: {calls} call{'s' if calls != 1 else ''}",
                )
            )
    if scale_max:
        for value in sorted({scale_max * step // 4 for step in range(5)}):
            chart.y_ticks.append((round(chart.plot_bottom - plot_height * value / scale_max, 2), value))
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
