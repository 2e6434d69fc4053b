"""Fixtures of the integration tests: replicas, a real sync server; the LangGraph
conformance reports printed at the end of the run."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

import pytest

import syncstore

pytest.importorskip("langgraph.checkpoint.base", reason="the langgraph extra is not installed")

ADMIN_URL = os.environ.get("SYNCSTORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
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


class RunningServer:
    def __init__(self, database_url: str):
        from syncstore_server.app import SyncServer
        from syncstore_server.auth import Secret

        self.database_url = database_url
        self.secret = Secret("integration-tests-secret-" + "i" * 24, source="tests")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-sync-server", daemon=True)
        self._thread.start()
        self.server = SyncServer(database_url, secret=self.secret, host="127.0.0.1", port=0)
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(60)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}"

    def token(self, tenant: str) -> str:
        from syncstore_server.auth import mint_token

        return mint_token(self.secret, tenant=tenant)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def sync_database():
    """One PostgreSQL database per test module (tests keep apart by tenant)."""
    psycopg = pytest.importorskip("psycopg")
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"syncstore_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield make_conninfo(**{**conninfo_to_dict(ADMIN_URL), "dbname": name})
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def sync_server(sync_database):
    running = RunningServer(sync_database)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
