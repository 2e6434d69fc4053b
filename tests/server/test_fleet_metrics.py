"""Fleet-wide execution and event figures on the sync server's /metrics.

Executions and events are recorded in real replicas of two tenants, synced
through a real server into the machine's PostgreSQL, and scraped from
/metrics; the figures must equal what :mod:`syncstore.metrics` computes in
Python over the same rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import syncstore
from syncstore import metrics

from syncstore_server.http import HttpSettings

from .conftest import ServerThread
from .helpers import token

pytestmark = pytest.mark.postgres

NOW = dt.datetime.now(dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


def scrape(server) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(server.http_url + "/metrics", timeout=30).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def fleet(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def record(store: syncstore.Store, *, seed: int) -> str:
    """Executions and events of every shape the figures look at; returns the
    id of one execution to delete later."""
    ex = store.executions
    shapes = [
        ("planner", "completed", 120.0, {"input_tokens": 100, "output_tokens": 20}, 0.01),
        ("planner", "completed", 80.0 + seed, {"input_tokens": 5, "output_tokens": 7, "total_tokens": 30}, 0.002),
        ("planner", "failed", 900.0, {"input_tokens": "lots", "output_tokens": 3.5}, None),
        ("coder", "cancelled", 40.0, None, 0.5),
        ("coder", "completed", 3000.0 + 10 * seed, {"input_tokens": -4, "output_tokens": 9}, 0.25),
    ]
    for agent_type, status, duration, usage, cost in shapes:
        run = ex.create(agent_type, status="running", started_at=NOW - dt.timedelta(minutes=5))
        ex.finish(run.id, status, duration_ms=duration, token_usage=usage, cost=cost)
    ex.create("planner")  # pending: no outcome yet
    ex.create("reviewer", status="running", started_at=NOW - dt.timedelta(minutes=1))
    old = ex.create("planner", status="running", started_at=NOW - 3 * HOUR)  # outside the window
    ex.finish(old.id, "failed", duration_ms=5.0)
    doomed = ex.create("planner", status="running", started_at=NOW - dt.timedelta(minutes=2))
    ex.finish(doomed.id, "failed", duration_ms=7.0)

    ev = store.events
    for i in range(12):
        ev.emit(
            "span",
            component="llm" if i % 3 else "tool",
            operation="chat" if i % 2 else "embed",
            severity=("info", "error", "critical", "warn")[i % 4],
            duration_ms=float(10 * i + seed),
            timestamp=NOW - dt.timedelta(minutes=i),
            data=(
                {"attributes": {"gen_ai.usage.input_tokens": 10 + i, "gen_ai.usage.output_tokens": i, "syncstore.cost": 0.001 * i}}
                if i % 2
                else {"token_usage": {"input_tokens": 3, "output_tokens": 4}, "cost": 0.5}
            ),
        )
    ev.emit("span", component="llm", operation="chat", timestamp=NOW - 5 * HOUR, duration_ms=1e6)  # outside
    ev.emit("log", severity="info", data={"message": "no component"}, timestamp=NOW)
    ev.flush()
    return doomed.id


def window_rows(stores):
    executions = [r for s in stores for r in s.executions.rows_between(since=NOW - HOUR)]
    events = [r for s in stores for r in s.events.rows_between(since=(NOW - HOUR).isoformat())]
    return executions, events


@pytest.fixture
def server(migrated):
    running = ServerThread(migrated, http=HttpSettings(fleet_ttl_s=0)).start()
    try:
        yield running
    finally:
        running.stop()


def test_metrics_show_the_figures_of_every_tenant(server, tmp_path):
    first, second = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    with syncstore.open(str(tmp_path / "a.db")) as a, syncstore.open(str(tmp_path / "b.db")) as b:
        doomed = record(a, seed=1)
        record(b, seed=2)
        a.delete("agent_executions", doomed)  # deleted rows leave the figures
        a.sync(server.ws_url, token=token(first))
        b.sync(server.ws_url, token=token(second))
        executions, events = window_rows([a, b])

    samples = scrape(server)
    assert not any("tenant" in dict(labels) for name, labels in samples if name.startswith("syncstore_fleet"))
    assert fleet(samples, "syncstore_fleet_window_seconds") == 3600

    expected = metrics.execution_stats(executions, by=("agent_type",))
    assert {s.group["agent_type"] for s in expected} == {"planner", "coder", "reviewer"}
    for stats in expected:
        labels = {"agent_type": stats.group["agent_type"]}
        for status in ("completed", "failed", "cancelled", "running", "pending"):
            assert fleet(samples, "syncstore_fleet_executions", **labels, status=status) == getattr(stats, status)
        assert fleet(samples, "syncstore_fleet_execution_errors", **labels) == stats.failed
        assert fleet(samples, "syncstore_fleet_execution_error_ratio", **labels) == (
            pytest.approx(stats.error_rate) if stats.error_rate is not None else None
        )
        for q, ms in (("0.5", stats.p50_ms), ("0.95", stats.p95_ms), ("0.99", stats.p99_ms)):
            found = fleet(samples, "syncstore_fleet_execution_duration_seconds", **labels, quantile=q)
            assert found == (pytest.approx(ms / 1000) if ms is not None else None), (labels, q)
        for kind in ("input", "output", "total"):
            assert fleet(samples, "syncstore_fleet_execution_tokens", **labels, kind=kind) == getattr(stats, f"{kind}_tokens")
        assert fleet(samples, "syncstore_fleet_execution_cost", **labels) == pytest.approx(stats.cost)
    planner = next(s for s in expected if s.group["agent_type"] == "planner")
    # Failed: one per tenant, plus the second tenant's last (the first's is deleted; the old ones are out).
    assert planner.failed == 3 and planner.pending == 2
    # Tokens that are not positive integers count as none; a given total wins over the sum.
    assert planner.input_tokens == 2 * 105 and planner.total_tokens == 2 * (120 + 30)

    expected_events = metrics.event_stats(events, by=("component", "operation"))
    assert len(expected_events) == 5  # llm/tool x chat/embed, and the event without component or operation
    for stats in expected_events:
        labels = {"component": stats.group["component"] or "", "operation": stats.group["operation"] or ""}
        assert fleet(samples, "syncstore_fleet_events", **labels) == stats.count
        assert fleet(samples, "syncstore_fleet_event_errors", **labels) == stats.errors
        assert fleet(samples, "syncstore_fleet_event_error_ratio", **labels) == pytest.approx(stats.error_rate)
        for q, ms in (("0.5", stats.p50_ms), ("0.95", stats.p95_ms), ("0.99", stats.p99_ms)):
            found = fleet(samples, "syncstore_fleet_event_duration_seconds", **labels, quantile=q)
            assert found == (pytest.approx(ms / 1000) if ms is not None else None), (labels, q)
        for kind in ("input", "output", "total"):
            assert fleet(samples, "syncstore_fleet_event_tokens", **labels, kind=kind) == getattr(stats, f"{kind}_tokens")
        assert fleet(samples, "syncstore_fleet_event_cost", **labels) == pytest.approx(stats.cost)
    assert sum(s.input_tokens for s in expected_events) > 0 and sum(s.cost for s in expected_events) > 0


def test_figures_are_cached_and_busy_groups_are_kept_apart_from_the_rest(migrated, tmp_path):
    settings = HttpSettings(fleet_ttl_s=3600, fleet_max_groups=2)
    server = ServerThread(migrated, http=settings).start()
    try:
        tok = token(f"t{uuid.uuid4().hex[:8]}")
        with syncstore.open(str(tmp_path / "a.db")) as store:
            for agent_type, runs in (("busy", 4), ("steady", 3), ("rare-1", 1), ("rare-2", 1)):
                for _ in range(runs):
                    store.executions.create(agent_type, status="running", started_at=NOW)
            store.sync(server.ws_url, token=tok)
            first = scrape(server)
            assert fleet(first, "syncstore_fleet_executions", agent_type="busy", status="running") == 4
            assert fleet(first, "syncstore_fleet_executions", agent_type="steady", status="running") == 3
            assert fleet(first, "syncstore_fleet_executions", agent_type="_other", status="running") == 2
            assert fleet(first, "syncstore_fleet_executions", agent_type="rare-1", status="running") is None

            store.executions.create("busy", status="running", started_at=NOW)
            store.sync(server.ws_url, token=tok)
            # Within the cache interval a scrape reads nothing new from PostgreSQL ...
            cached = scrape(server)
            assert fleet(cached, "syncstore_fleet_executions", agent_type="busy", status="running") == 4
            assert fleet(cached, "syncstore_fleet_computed_timestamp_seconds") == fleet(
                first, "syncstore_fleet_computed_timestamp_seconds"
            )
            # ... until the figures are refreshed.
            endpoints = server.server._http
            asyncio.run_coroutine_threadsafe(endpoints.fleet.refresh(force=True), server.loop).result(30)
            fresh = scrape(server)
            assert fleet(fresh, "syncstore_fleet_executions", agent_type="busy", status="running") == 5
    finally:
        server.stop()
