"""The charts' geometry: bars in proportion to their figures, marks placed by time."""

from __future__ import annotations

import datetime as dt

import pytest

from syncstore.console import charts
from syncstore.events import Event

T0 = dt.datetime(2025, 7, 17, 10, 0, tzinfo=dt.timezone.utc)


def test_bars_are_in_proportion_and_labelled():
    chart = charts.bars("Tokens", [("planner", 300), ("coder", 150), ("idle", 0)])
    widths = [bar.width for bar in chart.bars]
    assert widths[0] == pytest.approx(charts.BAR_WIDTH) and widths[1] == pytest.approx(widths[0] / 2) and widths[2] == 0
    assert [bar.y for bar in chart.bars] == sorted(bar.y for bar in chart.bars)
    assert [label.text for label in chart.labels if label.css == "value"] == ["300", "150", "0"]
    assert charts.bars("Empty", []).bars == []


def test_stacked_bars_split_each_row_by_series():
    chart = charts.stacked("Runs", [("planner", [("completed", 3), ("failed", 1)]), ("coder", [("completed", 2), ("failed", 0)])], series=["completed", "failed"])
    planner = [bar for bar in chart.bars if bar.title.startswith("planner")]
    assert [bar.css for bar in planner] == ["completed", "failed"]
    assert planner[1].x == pytest.approx(planner[0].x + planner[0].width)  # side by side
    assert sum(bar.width for bar in planner) == pytest.approx(charts.BAR_WIDTH)
    coder = [bar for bar in chart.bars if bar.title.startswith("coder")]
    assert len(coder) == 1 and coder[0].width == pytest.approx(charts.BAR_WIDTH * 2 / 4)
    assert chart.legend == [("completed", "completed"), ("failed", "failed")]


def test_grouped_bars_leave_out_missing_figures():
    chart = charts.grouped("Latency", [("planner", [("p50", 10.0), ("p95", 40.0)]), ("coder", [("p50", None), ("p95", 20.0)])], unit=" ms")
    assert [bar.title for bar in chart.bars] == ["planner p50: 10 ms", "planner p95: 40 ms", "coder p95: 20 ms"]
    assert chart.bars[1].width == pytest.approx(charts.BAR_WIDTH) and chart.bars[0].width == pytest.approx(charts.BAR_WIDTH / 4)


def event(seconds: float, component: str, duration_ms: float | None = None, severity: str = "info") -> Event:
    return Event(id="e", event_type="tool_call", timestamp=T0 + dt.timedelta(seconds=seconds), component=component,
                 duration_ms=duration_ms, severity=severity)  # fmt: skip


def test_events_are_placed_by_time_in_one_lane_per_component():
    axis = charts.event_axis([event(0, "shell"), event(1, "model", 500), event(2, "shell", severity="error")])
    xs = [mark.x for mark in axis.marks]
    assert xs[0] < xs[1] < xs[2]
    span = xs[2] - xs[0]
    assert xs[1] - xs[0] == pytest.approx(span / 2)
    assert [lane.text for lane in axis.lanes] == ["shell", "model"]
    assert axis.marks[0].y == axis.marks[2].y != axis.marks[1].y
    assert axis.marks[2].css == "severity-error"
    (duration,) = axis.spans  # the event with a duration is drawn from its start to its time
    assert duration.x + duration.width == pytest.approx(xs[1]) and duration.width == pytest.approx(span / 4)
    assert [tick.text for tick in axis.ticks][0] == "+0 ms"


def test_an_empty_axis_draws_nothing():
    axis = charts.event_axis([])
    assert axis.marks == [] and axis.ticks == [] and axis.start is None
