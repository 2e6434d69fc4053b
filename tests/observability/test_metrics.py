"""Metrics against figures worked out by hand."""

from __future__ import annotations

import datetime as dt

import msgspec
import numpy as np
import pytest

from syncstore import metrics

UTC = dt.timezone.utc


def at(minute: int) -> str:
    return f"2025-07-17T10:{minute:02d}:00.000000Z"


def execution(agent: str, status: str, minute: int, duration: float | None, usage: dict | None = None, cost: float | None = None) -> dict:
    """A row as the replica stores it: JSON as text, timestamps as text."""
    return {
        "agent_type": agent,
        "status": status,
        "started_at": at(minute),
        "created_at": at(minute),
        "duration_ms": duration,
        "token_usage": None if usage is None else msgspec.json.encode(usage).decode(),
        "cost": cost,
        "model": "m",
    }


ROWS = [
    execution("planner", "completed", 0, 100, {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}, 0.01),
    execution("planner", "completed", 1, 200, {"input_tokens": 20, "output_tokens": 10}, 0.02),
    execution("planner", "failed", 2, 300),
    execution("planner", "cancelled", 3, 400),
    execution("planner", "running", 4, None),
    execution("coder", "completed", 5, 50, {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}, 0.5),
    execution("coder", "failed", 6, 150),
]


def test_percentiles_interpolate_between_closest_ranks():
    values = [100, 200, 300, 400]
    # rank = (n - 1) * q / 100: 1.5 -> 250; 2.85 -> 385; 2.97 -> 397
    assert metrics.percentile(values, 50) == pytest.approx(250)
    assert metrics.percentile(values, 95) == pytest.approx(385)
    assert metrics.percentile(values, 99) == pytest.approx(397)
    assert metrics.percentile([7], 99) == 7
    assert metrics.percentile([], 50) is None
    for q in (0, 13, 50, 95, 99, 100):  # the same as numpy's default method
        assert metrics.percentile([3, 1, 4, 1, 5, 9, 2, 6], q) == pytest.approx(np.percentile([3, 1, 4, 1, 5, 9, 2, 6], q))
    with pytest.raises(ValueError):
        metrics.percentile(values, 101)


def test_execution_figures_per_agent_type():
    planner, coder = metrics.execution_stats(ROWS)
    assert planner.group == {"agent_type": "planner"}
    assert (planner.count, planner.completed, planner.failed, planner.cancelled, planner.running) == (5, 2, 1, 1, 1)
    assert planner.errors == 1
    assert planner.error_rate == pytest.approx(1 / 4)  # failed / finished; the running one has no outcome
    assert (planner.p50_ms, planner.p95_ms, planner.p99_ms) == pytest.approx((250, 385, 397))
    assert (planner.mean_ms, planner.max_ms) == (250, 400)
    assert (planner.input_tokens, planner.output_tokens, planner.total_tokens) == (30, 15, 45)
    assert planner.cost == pytest.approx(0.03)
    assert coder.group == {"agent_type": "coder"}
    assert (coder.count, coder.error_rate) == (2, 0.5)
    assert (coder.p50_ms, coder.p95_ms, coder.p99_ms) == pytest.approx((100, 145, 149))
    assert (coder.input_tokens, coder.output_tokens, coder.total_tokens, coder.cost) == (1, 2, 3, 0.5)


def test_one_overall_group():
    (overall,) = metrics.execution_stats(ROWS, by=())
    assert overall.group == {}
    assert (overall.count, overall.completed, overall.failed, overall.cancelled) == (7, 3, 2, 1)
    assert overall.error_rate == pytest.approx(2 / 6)
    # durations 50 100 150 200 300 400: ranks 2.5, 4.75, 4.95
    assert (overall.p50_ms, overall.p95_ms, overall.p99_ms) == pytest.approx((175, 375, 395))
    assert (overall.input_tokens, overall.output_tokens, overall.total_tokens) == (31, 17, 48)
    assert overall.cost == pytest.approx(0.53)


def test_the_window_includes_its_start_and_excludes_its_end():
    (planner,) = metrics.execution_stats(
        ROWS, since=dt.datetime(2025, 7, 17, 10, 1, tzinfo=UTC), until=dt.datetime(2025, 7, 17, 10, 4, tzinfo=UTC)
    )
    assert planner.count == 3  # minutes 1, 2, 3
    assert (planner.p50_ms, planner.error_rate) == (300, 1 / 3)


def test_server_rows_with_decoded_values_give_the_same_figures():
    decoded = [
        {**row, "started_at": dt.datetime.fromisoformat(row["started_at"].replace("Z", "+00:00")),
         "token_usage": msgspec.json.decode(row["token_usage"]) if row["token_usage"] else None}
        for row in ROWS
    ]  # fmt: skip
    assert metrics.execution_stats(decoded, by=("agent_type", "status")) == metrics.execution_stats(ROWS, by=("agent_type", "status"))


def test_no_finished_runs_means_no_error_rate():
    (only,) = metrics.execution_stats([execution("a", "running", 0, None)])
    assert only.error_rate is None and only.p50_ms is None


def test_grouping_by_an_unknown_field_is_refused():
    with pytest.raises(Exception, match="unknown column"):
        metrics.execution_stats(ROWS, by=("colour",))


def event(component: str, operation: str, severity: str, duration: float | None, tokens: tuple[int, int] | None = None, cost: float | None = None) -> dict:
    attributes = {}
    if tokens:
        attributes.update({"gen_ai.usage.input_tokens": tokens[0], "gen_ai.usage.output_tokens": tokens[1]})
    if cost is not None:
        attributes["syncstore.cost"] = cost
    return {
        "component": component,
        "operation": operation,
        "severity": severity,
        "duration_ms": duration,
        "timestamp": at(0),
        "data": msgspec.json.encode({"attributes": attributes}).decode(),
    }


def test_event_figures_per_component_and_operation():
    rows = [
        event("llm", "chat", "info", 10, (100, 20)),
        event("llm", "chat", "info", 30, (50, 10), cost=0.1),
        event("llm", "chat", "error", 20),
        event("tool", "execute_tool", "critical", None),
        event("tool", "execute_tool", "info", 5),
    ]
    chat, tool = metrics.event_stats(rows)
    assert chat.group == {"component": "llm", "operation": "chat"}
    assert (chat.count, chat.errors) == (3, 1) and chat.error_rate == pytest.approx(1 / 3)
    assert (chat.p50_ms, chat.p95_ms, chat.p99_ms) == pytest.approx((20, 29, 29.8))
    assert (chat.input_tokens, chat.output_tokens, chat.total_tokens) == (150, 30, 180)
    assert chat.cost == pytest.approx(0.1)
    assert (tool.count, tool.errors, tool.error_rate) == (2, 1, 0.5)
    assert (tool.p50_ms, tool.p99_ms) == (5, 5)


def test_parse_since():
    now = dt.datetime(2025, 7, 17, 12, 0, tzinfo=UTC)
    assert metrics.parse_since("15m", now=now) == dt.datetime(2025, 7, 17, 11, 45, tzinfo=UTC)
    assert metrics.parse_since("2h", now=now) == dt.datetime(2025, 7, 17, 10, 0, tzinfo=UTC)
    assert metrics.parse_since("1.5d", now=now) == dt.datetime(2025, 7, 16, 0, 0, tzinfo=UTC)
    assert metrics.parse_since("2025-07-17T09:00:00+02:00") == dt.datetime(2025, 7, 17, 7, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        metrics.parse_since("last tuesday")


def test_store_stats_over_real_rows(store):
    for minute, (agent, status, duration) in enumerate([("a", "completed", 10.0), ("a", "failed", 30.0), ("b", "completed", 5.0)]):
        made = store.executions.create(agent, status="running", started_at=f"2025-07-17T10:{minute:02d}:00Z")
        store.executions.finish(made.id, status, duration_ms=duration, token_usage={"input_tokens": 2, "output_tokens": 1}, cost=1.0)
    a, b = store.executions.stats()
    assert (a.group, a.count, a.error_rate, a.p50_ms, a.total_tokens, a.cost) == ({"agent_type": "a"}, 2, 0.5, 20.0, 6, 2.0)
    assert (b.count, b.error_rate) == (1, 0.0)
    late = store.executions.stats(since=dt.datetime(2025, 7, 17, 10, 1, tzinfo=UTC), by=("status",))
    assert sorted((s.group["status"], s.count, s.p50_ms) for s in late) == [("completed", 1, 5.0), ("failed", 1, 30.0)]
