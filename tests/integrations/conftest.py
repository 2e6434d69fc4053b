"""Fixtures of the integration tests: replicas, a real sync server; the LangGraph
conformance reports printed at the end of the run."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import syncstore

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError:  # without the langgraph extra there is nothing here to test
    collect_ignore_glob = ["test_*.py"]

CONFORMANCE_REPORTS: list[Any] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show LangGraph's own verdict on the saver, capability by capability."""
    for report in CONFORMANCE_REPORTS:
        terminalreporter.section(f"langgraph-checkpoint-conformance: {report.checkpointer_name}")
        for name, result in sorted(report.results.items()):
            verdict = "passed" if result.passed else ("FAILED" if result.passed is False else "not run")
            terminalreporter.write_line(
                f"{name:16} {verdict:8} {result.tests_passed} passed, {result.tests_failed} failed"
            )
        terminalreporter.write_line(f"conformance level: {report.conformance_level()}")


@pytest.fixture
def replicas(tmp_path):
    """A factory of replicas in files of their own; all closed afterwards."""
    opened: list[syncstore.Store] = []

    def make(name: str | None = None) -> syncstore.Store:
        store = syncstore.open(str(tmp_path / f"{name or uuid.uuid4().hex[:8]}.db"))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


# --- a real sync server: in a thread, on a free port, against a fresh database ---


@pytest.fixture(scope="module")
def sync_server():
    pytest.importorskip("psycopg")
    from running_server import running_server

    with running_server() as server:
        yield server


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
