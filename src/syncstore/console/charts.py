"""The geometry of the console's charts; the templates draw it as inline SVG.

Pure functions from figures to shapes (positions in SVG user units), so a
chart needs no script, no library in the page and no network, and every
label is escaped by the template like any other value. Colours come from
CSS classes (the status or severity), never from data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, NamedTuple, Sequence

from syncstore import schema

LABEL_WIDTH = 150
CHART_WIDTH = 480  # the time axes
BAR_WIDTH = 340  # the bar charts (two of them side by side on a page)
ROW = 22
AXIS = 24


class Bar(NamedTuple):
    x: float
    y: float
    width: float
    height: float
    css: str  # a class: the series or status
    title: str  # shown on hover


class Label(NamedTuple):
    x: float
    y: float
    text: str
    anchor: str = "start"
    css: str = ""


class Chart(NamedTuple):
    title: str
    width: float
    height: float
    bars: list[Bar]
    labels: list[Label]
    legend: list[tuple[str, str]]  # (css class, name)


def _scale(maximum: float) -> float:
    return BAR_WIDTH / maximum if maximum > 0 else 0.0


def _short(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bars(title: str, items: Sequence[tuple[str, float]], *, unit: str = "", css: str = "series-0") -> Chart:
    """One horizontal bar per item, with its value written after it."""
    scale = _scale(max((value for _, value in items), default=0.0))
    out, labels = [], []
    for index, (name, value) in enumerate(items):
        y = index * ROW
        width = value * scale
        out.append(Bar(LABEL_WIDTH, y + 3, width, ROW - 6, css, f"{name}: {_figure(value)}{unit}"))
        labels.append(Label(LABEL_WIDTH - 6, y + ROW - 7, _short(name), "end"))
        labels.append(Label(LABEL_WIDTH + width + 4, y + ROW - 7, f"{_figure(value)}{unit}", "start", "value"))
    return Chart(title, LABEL_WIDTH + BAR_WIDTH + 90, max(ROW, len(items) * ROW) + 4, out, labels, [])


def stacked(title: str, rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], *, series: Sequence[str]) -> Chart:
    """One bar per row, split into its series (e.g. runs by status)."""
    scale = _scale(max((sum(v for _, v in parts) for _, parts in rows), default=0.0))
    out, labels = [], []
    for index, (name, parts) in enumerate(rows):
        y = index * ROW
        x = float(LABEL_WIDTH)
        for key, value in parts:
            if value <= 0:
                continue
            width = value * scale
            out.append(Bar(x, y + 3, width, ROW - 6, key, f"{name}, {key}: {_figure(value)}"))
            x += width
        labels.append(Label(LABEL_WIDTH - 6, y + ROW - 7, _short(name), "end"))
        labels.append(Label(x + 4, y + ROW - 7, _figure(sum(v for _, v in parts)), "start", "value"))
    legend = [(key, key) for key in series]
    return Chart(title, LABEL_WIDTH + BAR_WIDTH + 90, max(ROW, len(rows) * ROW) + 4, out, labels, legend)


def grouped(title: str, rows: Sequence[tuple[str, Sequence[tuple[str, float | None]]]], *, unit: str = "") -> Chart:
    """Several thin bars per row (e.g. p50, p95 and p99 of each agent type)."""
    values = [v for _, parts in rows for _, v in parts if v is not None]
    scale = _scale(max(values, default=0.0))
    out, labels = [], []
    per_row = max((len(parts) for _, parts in rows), default=1)
    band = max(ROW, per_row * 9 + 6)
    names: list[str] = []
    for index, (name, parts) in enumerate(rows):
        y = index * band
        for position, (key, value) in enumerate(parts):
            if key not in names:
                names.append(key)
            if value is None:
                continue
            width = value * scale
            top = y + 3 + position * 9
            out.append(Bar(LABEL_WIDTH, top, width, 8, f"series-{names.index(key)}", f"{name} {key}: {_figure(value)}{unit}"))
            labels.append(Label(LABEL_WIDTH + width + 4, top + 7, f"{key} {_figure(value)}{unit}", "start", "value small"))
        labels.append(Label(LABEL_WIDTH - 6, y + band / 2 + 4, _short(name), "end"))
    legend = [(f"series-{i}", key) for i, key in enumerate(names)]
    return Chart(title, LABEL_WIDTH + BAR_WIDTH + 130, max(band, len(rows) * band) + 4, out, labels, legend)


def _figure(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) < 1:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:,.1f}"


# --- time axes ----------------------------------------------------------------------


class Mark(NamedTuple):
    x: float
    y: float
    css: str
    title: str
    index: int  # the row of the table below that this mark stands for


class Span(NamedTuple):
    x: float
    y: float
    width: float
    css: str
    title: str


class Axis(NamedTuple):
    width: float
    height: float
    lanes: list[Label]
    marks: list[Mark]
    spans: list[Span]
    ticks: list[Label]
    start: float | None  # unix seconds
    end: float | None
    line: tuple[float, float, float] = (LABEL_WIDTH, LABEL_WIDTH + CHART_WIDTH, 0.0)  # the time line: x from, x to, y


def _unix(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return schema.parse_timestamp(value).timestamp()


def _ticks(start: float, span: float, y: float) -> list[Label]:
    out = []
    for i in range(5):
        at = span * i / 4
        if span >= 10:
            text = f"+{at:.1f} s"
        else:
            text = f"+{at * 1000:.{0 if span >= 0.1 else 2}f} ms"
        out.append(Label(LABEL_WIDTH + CHART_WIDTH * i / 4, y, text, "middle" if 0 < i < 4 else ("start" if i == 0 else "end"), "tick"))
    return out


def event_axis(events: Iterable[Any], *, lane_of: str = "component") -> Axis:
    """Events as marks on a time axis, one lane per component (or another field);
    an event with a duration is drawn as a span ending at its time."""
    rows = list(events)
    times = [_unix(e.timestamp) for e in rows]
    starts = [t - (e.duration_ms or 0) / 1000 for t, e in zip(times, rows) if t is not None]
    start = min(starts, default=None)
    end = max((t for t in times if t is not None), default=None)
    span = (end - start) if start is not None and end is not None else 0.0
    lane_names: list[str] = []
    for e in rows:
        name = getattr(e, lane_of, None) or e.event_type
        if name not in lane_names:
            lane_names.append(name)

    def x(t: float) -> float:
        return LABEL_WIDTH + ((t - start) / span * CHART_WIDTH if span > 0 else CHART_WIDTH / 2)  # type: ignore[operator]

    marks, spans = [], []
    for index, (t, e) in enumerate(zip(times, rows)):
        if t is None:
            continue
        lane = lane_names.index(getattr(e, lane_of, None) or e.event_type)
        y = lane * ROW + ROW / 2
        title = f"{e.event_type} ({e.severity})"
        if e.duration_ms:
            begin = x(t - e.duration_ms / 1000)
            spans.append(Span(begin, y - 4, max(2.0, x(t) - begin), f"severity-{e.severity}", f"{title}, {e.duration_ms:.1f} ms"))
        marks.append(Mark(x(t), y, f"severity-{e.severity}", title, index))
    height = len(lane_names) * ROW
    lanes = [Label(LABEL_WIDTH - 6, i * ROW + ROW / 2 + 4, _short(name), "end") for i, name in enumerate(lane_names)]
    ticks = _ticks(start, span, height + 16) if start is not None else []
    return Axis(LABEL_WIDTH + CHART_WIDTH + 40, height + AXIS, lanes, marks, spans, ticks, start, end, (LABEL_WIDTH, LABEL_WIDTH + CHART_WIDTH, height + 2))


def step_axis(rows: Sequence[Any], *, start: float | None, end: float | None) -> Axis:
    """A workflow timeline's steps (``syncstore.workflows.timeline.Row``) as bars by
    time, failed attempts before them, steps that did not run as labels only."""
    span = (end - start) if start is not None and end is not None else 0.0

    def x(t: float) -> float:
        return LABEL_WIDTH + ((t - start) / span * CHART_WIDTH if span > 0 else 0.0)  # type: ignore[operator]

    lanes, spans, marks = [], [], []
    for index, row in enumerate(rows):
        y = index * ROW
        lanes.append(Label(8 + 12 * row.depth, y + ROW - 7, f"{row.number} {_short(row.id, 22)}", "start", f"status-{row.status}"))
        for attempt in row.attempts:
            ax = x(attempt.start)
            spans.append(Span(ax, y + 5, max(3.0, x(attempt.end) - ax), "status-attempt", f"failed attempt: {attempt.error or ''}"))
        if row.start is not None:
            sx = x(row.start)
            stop = row.end if row.end is not None else (end or row.start)
            spans.append(Span(sx, y + 4, max(3.0, x(stop) - sx), f"status-{row.status}", f"{row.id}: {row.status}"))
        else:
            marks.append(Mark(LABEL_WIDTH + 4, y + ROW - 7, f"status-{row.status}", row.status, index))
    height = len(rows) * ROW
    ticks = _ticks(start, span, height + 16) if start is not None and span > 0 else []
    return Axis(LABEL_WIDTH + CHART_WIDTH + 40, height + AXIS, lanes, marks, spans, ticks, start, end, (LABEL_WIDTH, LABEL_WIDTH + CHART_WIDTH, height + 2))
