"""``syncstore executions ...`` and ``syncstore events ...`` through click's runner."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

import syncstore
from syncstore.cli.main import cli


@pytest.fixture
def populated(replica_path):
    """Two finished runs with events, written by an agent that has exited."""
    with syncstore.open(replica_path) as store:
        with store.executions.track("planner", input={"goal": "g"}) as good:
            store.events.emit("plan.step", component="planner", operation="think", duration_ms=10)
            store.events.emit("plan.step", component="planner", operation="think", duration_ms=30)
            good.usage(input_tokens=100, output_tokens=10, cost=0.5, model="gpt-4o")
        with pytest.raises(RuntimeError):
            with store.executions.track("coder") as bad:
                store.events.emit("edit", component="coder", operation="write", severity="warn")
                raise RuntimeError("disk full")
    return replica_path, good.id, bad.id


def run(path: str, *args: str):
    # A wide terminal, so that tables are not cut to 80 columns.
    return CliRunner().invoke(cli, ["--db", path, *args], catch_exceptions=False, env={"COLUMNS": "200"})


def test_list_shows_the_runs_newest_first(populated):
    path, good, bad = populated
    listed = run(path, "executions", "list", "--json")
    assert listed.exit_code == 0
    assert [e["id"] for e in json.loads(listed.output)] == [bad, good]
    only_failed = json.loads(run(path, "executions", "list", "--status", "failed", "--json").output)
    assert [e["id"] for e in only_failed] == [bad]
    table = run(path, "executions", "list").output
    assert "planner" in table and "failed" in table and "gpt-4o" in table


def test_show_prints_the_execution_and_its_events_in_order(populated):
    path, good, bad = populated
    shown = run(path, "executions", "show", good)
    assert shown.exit_code == 0
    assert "completed" in shown.output and "planner" in shown.output and "3 events" not in shown.output
    assert shown.output.index("agent_type") < shown.output.index("plan.step")
    document = json.loads(run(path, "executions", "show", bad, "--json").output)
    assert document["execution"]["status"] == "failed"
    assert document["execution"]["error"] == "RuntimeError: disk full"
    assert [e["event_type"] for e in document["events"]] == ["edit", "error"]
    assert document["events"][1]["correlation_id"] == document["execution"]["correlation_id"]
    failed = run(path, "executions", "show", bad).output
    assert "RuntimeError: disk full" in failed


def test_show_of_an_unknown_id_is_one_line_of_error(populated):
    path, _, _ = populated
    result = CliRunner().invoke(cli, ["--db", path, "executions", "show", "01a215e8-0000-7000-8000-000000000000"])
    assert result.exit_code == 1 and "error:" in result.output


def test_stats_figures(populated):
    path, _, _ = populated
    result = run(path, "executions", "stats", "--since", "1h", "--json")
    document = json.loads(result.output)
    groups = {g["group"]["agent_type"]: g for g in document["groups"]}
    assert (groups["planner"]["count"], groups["planner"]["error_rate"]) == (1, 0.0)
    assert (groups["coder"]["failed"], groups["coder"]["error_rate"]) == (1, 1.0)
    assert groups["planner"]["input_tokens"] == 100 and groups["planner"]["cost"] == 0.5
    assert document["overall"]["count"] == 2 and document["overall"]["error_rate"] == 0.5
    by_status = json.loads(run(path, "executions", "stats", "--by", "status", "--json").output)
    assert sorted((g["group"]["status"], g["count"]) for g in by_status["groups"]) == [("completed", 1), ("failed", 1)]
    table = run(path, "executions", "stats").output
    assert "planner" in table and "coder" in table and "100.0%" in table and "50.0%" in table  # coder, overall


def test_a_bad_window_is_a_usage_error(populated):
    path, _, _ = populated
    result = CliRunner().invoke(cli, ["--db", path, "executions", "stats", "--since", "last week"])
    assert result.exit_code == 2 and "duration" in result.output


def test_event_stats(populated):
    path, _, _ = populated
    document = json.loads(run(path, "events", "stats", "--json").output)
    think = next(g for g in document["groups"] if g["group"] == {"component": "planner", "operation": "think"})
    assert (think["count"], think["p50_ms"], think["errors"]) == (2, 20.0, 0)


def test_tail_prints_the_last_lines_with_filters(populated):
    path, _, bad = populated
    lines = run(path, "events", "tail", "-n", "2").output.splitlines()
    assert len(lines) == 2 and "edit" in lines[0] and "RuntimeError" in lines[1]
    warn = run(path, "events", "tail", "--severity", "warn").output.splitlines()
    assert len(warn) == 2  # the warn and the error
    mine = [json.loads(x) for x in run(path, "events", "tail", "--execution", bad, "--json").output.splitlines()]
    assert [e["event_type"] for e in mine] == ["edit", "error"]
    planner = run(path, "events", "tail", "--component", "planner").output.splitlines()
    assert len(planner) == 2 and all("planner/think" in x for x in planner)


def test_tail_follow_streams_what_arrives(populated):
    path, _, _ = populated
    done = threading.Event()

    def agent() -> None:
        with syncstore.open(path) as store:
            for i in range(2000):  # bounded: stops by itself if the reader never does
                if done.wait(0.02):
                    return
                store.events.emit("live", component="streamer", data={"i": i}, severity="error")

    writer = threading.Thread(target=agent)
    writer.start()
    try:
        result = run(path, "events", "tail", "--follow", "-n", "0", "--component", "streamer", "--count", "3", "--interval", "0.02")
    finally:
        done.set()
        writer.join(30)
    lines = result.output.splitlines()
    assert result.exit_code == 0 and len(lines) == 3
    assert all("streamer/-" in x and "live" in x for x in lines)


def test_export_writes_otlp_json(populated, tmp_path):
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider

    from syncstore.otel import SyncstoreSpanProcessor

    path, _, _ = populated
    with syncstore.open(path) as store:
        provider = TracerProvider()
        provider.add_span_processor(SyncstoreSpanProcessor(store))
        with provider.get_tracer("t").start_as_current_span("invoke_agent helper"):
            pass
        provider.shutdown()
    target = tmp_path / "out.json"
    result = CliRunner().invoke(cli, ["--db", path, "events", "export", "--otlp", str(target)])
    assert result.exit_code == 0 and "wrote 1 spans" in result.output
    spans = json.loads(target.read_text())["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["name"] for s in spans] == ["invoke_agent helper"]
    printed = run(path, "events", "export", "--otlp", "-").output
    assert json.loads(printed) == json.loads(target.read_text())
