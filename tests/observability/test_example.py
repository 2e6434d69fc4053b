"""The OpenTelemetry example runs and shows its run in the CLI, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import syncstore

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "otel_agent.py")


def test_the_example_records_a_run_and_shows_it(tmp_path):
    pytest.importorskip("opentelemetry.sdk")
    db, spans = tmp_path / "agent.db", tmp_path / "spans.json"
    done = subprocess.run(
        [sys.executable, EXAMPLE, "--db", str(db), "--otlp", str(spans)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "executions show" in done.stdout and "execute_tool web_fetch" in done.stdout
    with syncstore.open(str(db)) as store:
        (execution,) = store.executions.list()
        assert (execution.agent_type, execution.status, execution.model) == ("researcher", "completed", "tiny-model-001")
        assert execution.token_usage["total_tokens"] > 0
        events = store.executions.events(execution.id)
        assert len(events) == 5 and [e.severity for e in events].count("error") == 1
    exported = json.loads(spans.read_text())
    assert sum(len(s["spans"]) for r in exported["resourceSpans"] for s in r["scopeSpans"]) == 5
