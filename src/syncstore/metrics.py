"""Aggregations over executions and events: pure functions over row dicts.

Nothing here touches storage, so the same code serves a replica (rows as the
replica stores them: JSON as text, timestamps as ISO text) and the sync server
(rows from PostgreSQL: JSON as dicts, timestamps as datetimes); both forms
are accepted.

Definitions, so figures can be checked by hand:

- ``count``: rows in the group (in the window, when one is given);
- executions: ``error_rate = failed / (completed + failed + cancelled)``: runs
  still pending or running have no outcome yet and are left out; ``None``
  when nothing has finished;
- events: ``errors`` are events of severity ``error`` or ``critical``;
  ``error_rate = errors / count``;
- ``p50_ms``, ``p95_ms``, ``p99_ms``: percentiles of ``duration_ms`` over the
  rows that have one, by linear interpolation between closest ranks (the
  rank of percentile q among n sorted values is ``(n - 1) * q / 100``; this is
  numpy's default method); ``None`` when no row has a duration;
- tokens: executions sum ``token_usage`` (``input_tokens``,
  ``output_tokens``, ``total_tokens``, the last defaulting to the sum of the
  first two); events sum the GenAI attributes of spans
  (``gen_ai.usage.input_tokens`` / ``output_tokens`` in ``data.attributes``)
  or ``data.token_usage``. An agent span that repeats its children's usage is
  counted in its own operation's group; use execution figures for run totals;
- ``cost``: the sum of ``cost`` (executions) or of the span attribute
  ``syncstore.cost`` / ``data.cost`` (events).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping  # typing.Mapping's isinstance check costs several times more, per row
from typing import Any, Callable, Iterable, Sequence

import msgspec

from syncstore import schema

EXECUTION_GROUPS = ("agent_type", "status", "provider", "model", "task_id")
EVENT_GROUPS = ("component", "operation", "event_type", "severity", "execution_id")
_ERROR_SEVERITIES = frozenset(("error", "critical"))
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class GroupStats(msgspec.Struct, kw_only=True):
    """The figures of one group; ``group`` maps each grouping field to its value."""

    group: dict[str, Any]
    count: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    pending: int = 0
    errors: int = 0
    error_rate: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost: float = 0.0


# --- small pure pieces ------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation."""
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def parse_since(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """A window start: a duration back from ``now`` (``90s``, ``15m``, ``2h``,
    ``7d``, ``1w``) or an ISO-8601 timestamp with a timezone."""
    match = _DURATION.match(text)
    if match:
        now = now or dt.datetime.now(dt.timezone.utc)
        return now - dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        return schema.parse_timestamp(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration like 15m, 2h, 7d nor an ISO timestamp with a timezone") from None


def as_json(value: Any) -> Any:
    """A JSON column as a Python value, whether stored as text or decoded already."""
    if isinstance(value, (str, bytes)):
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            return None
    return value


def as_time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return schema.parse_timestamp(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def in_window(when: dt.datetime | None, since: dt.datetime | None, until: dt.datetime | None) -> bool:
    if since is None and until is None:
        return True
    if when is None:
        return False
    return (since is None or when >= since) and (until is None or when < until)


# --- the aggregation --------------------------------------------------------------


def _summarize(
    rows: Iterable[Mapping[str, Any]],
    *,
    by: Sequence[str],
    tally: Callable[[GroupStats, Mapping[str, Any]], None],
    finish: Callable[[GroupStats], None],
) -> list[GroupStats]:
    groups: dict[tuple[Any, ...], GroupStats] = {}
    durations: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        key = tuple(row.get(name) for name in by)
        stats = groups.get(key)
        if stats is None:
            stats = groups[key] = GroupStats(group=dict(zip(by, key)))
            durations[key] = []
        stats.count += 1
        tally(stats, row)
        duration = _number(row.get("duration_ms"))
        if duration is not None:
            durations[key].append(duration)
    for key, stats in groups.items():
        values = durations[key]
        if values:
            stats.p50_ms = percentile(values, 50)
            stats.p95_ms = percentile(values, 95)
            stats.p99_ms = percentile(values, 99)
            stats.mean_ms = sum(values) / len(values)
            stats.max_ms = max(values)
        finish(stats)
    return sorted(groups.values(), key=lambda s: (-s.count, [str(v) for v in s.group.values()]))


def execution_stats(
    rows: Iterable[Mapping[str, Any]],
    *,
    by: Sequence[str] = ("agent_type",),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[GroupStats]:
    """Figures per group of ``agent_executions`` rows; ``by=()`` gives one
    overall group. The window applies to ``started_at`` (``created_at`` for a
    run that never started)."""
    for name in by:
        schema.table("agent_executions").column(name)

    def tally(stats: GroupStats, row: Mapping[str, Any]) -> None:
        status = row.get("status")
        if status in ("completed", "failed", "cancelled", "running", "pending"):
            setattr(stats, status, getattr(stats, status) + 1)
        usage = as_json(row.get("token_usage")) or {}
        if isinstance(usage, Mapping):
            tokens_in, tokens_out = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
            stats.input_tokens += tokens_in
            stats.output_tokens += tokens_out
            stats.total_tokens += _count(usage.get("total_tokens")) or tokens_in + tokens_out
        stats.cost += _number(row.get("cost")) or 0.0

    def finish(stats: GroupStats) -> None:
        stats.errors = stats.failed
        ended = stats.completed + stats.failed + stats.cancelled
        stats.error_rate = stats.failed / ended if ended else None

    if since is None and until is None:
        selected: Iterable[Mapping[str, Any]] = rows  # no window: no time to read
    else:
        selected = [r for r in rows if in_window(as_time(r.get("started_at") or r.get("created_at")), since, until)]
    return _summarize(selected, by=by, tally=tally, finish=finish)


def event_tokens(data: Any) -> tuple[int, int, float]:
    """(input tokens, output tokens, cost) carried by one event's data."""
    data = as_json(data)
    if not isinstance(data, Mapping):
        return 0, 0, 0.0
    attributes = data.get("attributes")
    attributes = attributes if isinstance(attributes, Mapping) else {}
    usage = data.get("token_usage")
    usage = usage if isinstance(usage, Mapping) else {}
    tokens_in = _count(attributes.get("gen_ai.usage.input_tokens")) or _count(usage.get("input_tokens"))
    tokens_out = _count(attributes.get("gen_ai.usage.output_tokens")) or _count(usage.get("output_tokens"))
    cost = _number(attributes.get("syncstore.cost")) or _number(data.get("cost")) or 0.0
    return tokens_in, tokens_out, cost


def event_stats(
    rows: Iterable[Mapping[str, Any]],
    *,
    by: Sequence[str] = ("component", "operation"),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[GroupStats]:
    """Figures per group of ``observability_events`` rows; the window applies
    to ``timestamp``."""
    for name in by:
        schema.table("observability_events").column(name)

    def tally(stats: GroupStats, row: Mapping[str, Any]) -> None:
        if row.get("severity") in _ERROR_SEVERITIES:
            stats.errors += 1
        tokens_in, tokens_out, cost = event_tokens(row.get("data"))
        stats.input_tokens += tokens_in
        stats.output_tokens += tokens_out
        stats.total_tokens += tokens_in + tokens_out
        stats.cost += cost

    def finish(stats: GroupStats) -> None:
        stats.error_rate = stats.errors / stats.count if stats.count else None

    if since is None and until is None:
        selected: Iterable[Mapping[str, Any]] = rows  # no window: no time to read
    else:
        selected = [r for r in rows if in_window(as_time(r.get("timestamp")), since, until)]
    return _summarize(selected, by=by, tally=tally, finish=finish)
