"""An agent run traced offline reaches the server and another replica by sync.

A real sync server on a free port against a fresh PostgreSQL database, real
websockets, replicas in files.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import syncstore

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from syncstore_server.app import SyncServer  # noqa: E402
from syncstore_server.auth import Secret, mint_token  # noqa: E402

from syncstore.otel import SyncstoreSpanProcessor  # noqa: E402

pytestmark = pytest.mark.postgres

SECRET = Secret("observability-sync-tests-" + "s" * 24, source="tests")


@pytest.fixture
def server(database_url):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = SyncServer(database_url, secret=SECRET, host="127.0.0.1", port=0)
    asyncio.run_coroutine_threadsafe(running.start(), loop).result(60)
    try:
        yield running
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_traced_run_recorded_offline_shows_up_everywhere_after_sync(server, tmp_path):
    agent, operator = syncstore.open(str(tmp_path / "agent.db")), syncstore.open(str(tmp_path / "operator.db"))
    provider = TracerProvider()
    provider.add_span_processor(SyncstoreSpanProcessor(agent))
    tracer = provider.get_tracer("e2e")
    # Offline: no server has been contacted yet.
    with tracer.start_as_current_span("invoke_agent planner", attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}):
        with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 9, "gen_ai.usage.output_tokens": 3}):
            pass
    provider.shutdown()
    (execution,) = agent.executions.list()

    url, token = f"ws://127.0.0.1:{server.port}", mint_token(SECRET, tenant="observability")
    pushed = agent.sync(url, token=token)
    assert pushed.rejected == 0 and pushed.pushed >= 3  # the execution (insert and end) and two span events
    with psycopg.connect(server.database_url) as conn:  # in PostgreSQL, the tenant's rows
        executions = conn.execute("select id from syncstore.agent_executions where tenant = 'observability'").fetchall()
        spans = conn.execute(
            "select count(*) from syncstore.observability_events where tenant = 'observability' and execution_id = %s",
            (execution.id,),
        ).fetchone()[0]
    assert executions == [(execution.id,)] and spans == 2

    operator.sync(url, token=token)
    copy = operator.executions.get(execution.id)
    assert copy == agent.executions.get(execution.id)
    assert copy.status == "completed" and copy.token_usage["total_tokens"] == 12
    assert [e.data["name"] for e in operator.executions.events(execution.id)] == ["invoke_agent planner", "chat m"]
    agent.close()
    operator.close()
