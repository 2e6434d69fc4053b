"""A LangGraph thread started on one machine and finished on another, through a real sync server.

Machine A (a child process with its own replica) runs a graph until it
interrupts for human approval and is killed with SIGKILL; its replica is
synced afterwards. Machine B syncs, sees the interrupted thread, resumes it
with the approval, forks it from an earlier checkpoint, and syncs back. Both
replicas and PostgreSQL end with the same checkpoint history, and no
checkpoint row ever conflicts.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from syncstore import schema

psycopg = pytest.importorskip("psycopg")
from langgraph.types import Command  # noqa: E402

from pg_rows import tenant_rows  # noqa: E402
from syncstore.integrations.langgraph import SyncstoreSaver  # noqa: E402

from .approval_graph import build  # noqa: E402

pytestmark = pytest.mark.postgres

TABLES = ("langgraph_checkpoints", "langgraph_checkpoint_blobs", "langgraph_checkpoint_writes")
GRAPH_SCRIPT = Path(__file__).with_name("approval_graph.py")


def run_until_interrupt_then_kill(path: str, thread_id: str) -> list[str]:
    """Machine A: run the graph in a child process until the interrupt, then SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, str(GRAPH_SCRIPT), path, thread_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in child.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        line = lines.get(timeout=120)
    except queue.Empty:
        child.kill()
        raise AssertionError(f"machine A never reached the interrupt: {child.stderr.read()}") from None  # type: ignore[union-attr]
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    report = json.loads(line)
    assert report["interrupted"]
    return report["checkpoints"]


def thread_rows(store: Any, thread_id: str) -> dict[str, dict[str, dict[str, Any]]]:
    out = {}
    for table in TABLES:
        names = schema.table(table).column_names
        rows = store.query(f"select {', '.join(names)} from {table} where thread_id = ?", (thread_id,))
        out[table] = {row["id"]: {n: row[n] for n in names[1:]} for row in rows}
    return out


def server_thread_rows(database_url: str, tenant: str, thread_id: str) -> dict[str, dict[str, dict[str, Any]]]:
    out = {}
    with psycopg.connect(database_url) as conn:
        for table in TABLES:
            out[table] = {
                row_id: values
                for row_id, deleted, values in tenant_rows(conn, schema.table(table), tenant)
                if not deleted and values["thread_id"] == thread_id
            }
    return out


def server_conflicts(database_url: str, tenant: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "select count(*) from syncstore.conflicts where tenant = %s and tbl like 'langgraph%%'", (tenant,)
        ).fetchone()[0]


def history(graph: Any, config: dict[str, Any]) -> list[tuple[str, tuple[str, ...], dict[str, Any]]]:
    return [(s.config["configurable"]["checkpoint_id"], s.next, s.values) for s in graph.get_state_history(config)]


def test_a_thread_interrupted_on_one_machine_is_approved_and_forked_on_another(
    sync_server, tenant, replicas, tmp_path
):
    url, token = sync_server.url, sync_server.token(tenant)
    thread = "post-1"
    config = {"configurable": {"thread_id": thread}}

    # Machine A: runs to the interrupt and dies without a goodbye; what it committed
    # before dying is pushed by the next sync of its replica file.
    a_path = str(tmp_path / "machine-a.db")
    written_on_a = run_until_interrupt_then_kill(a_path, thread)
    assert len(written_on_a) == 4  # input, plan, draft, and the checkpoint waiting at approve
    a = replicas("machine-a")
    assert a.path == a_path
    pushed = a.sync(url, token=token)
    assert pushed.rejected == 0 and pushed.pushed > 0

    # Machine B: the interrupted thread arrives, waiting for the approval.
    b = replicas("machine-b")
    b.sync(url, token=token)
    on_b = build(SyncstoreSaver(b))
    waiting = on_b.get_state(config)
    assert waiting.next == ("approve",)
    assert waiting.config["configurable"]["checkpoint_id"] == written_on_a[0]
    assert [i.value for task in waiting.tasks for i in task.interrupts] == [{"draft": "a post about offline sync"}]

    # B approves: the thread finishes on B.
    done = on_b.invoke(Command(resume={"approved": True}), config)
    assert done["published"] == "a post about offline sync"
    assert done["log"] == ["plan offline sync", "draft", "approved=True", "publish"]

    # Time travel on B across both machines' checkpoints: the state history holds
    # A's four checkpoints under B's, and a fork from A's interrupted checkpoint
    # takes its own branch.
    full = history(on_b, config)
    assert [cid for cid, _, _ in full][-4:] == written_on_a
    assert [nxt for _, nxt, _ in full] == [(), ("publish",), ("approve",), ("draft",), ("plan",), ("__start__",)]
    forked = on_b.update_state(waiting.config, {"draft": "a shorter post"})
    fork_state = on_b.get_state(forked)
    assert fork_state.parent_config["configurable"]["checkpoint_id"] == written_on_a[0]
    rerun = on_b.invoke(Command(resume={"approved": True}), forked)
    assert rerun["published"] == "a shorter post"

    # Sync both ways: both replicas and PostgreSQL hold the same history.
    b.sync(url, token=token)
    a.sync(url, token=token)
    rows_a, rows_b = thread_rows(a, thread), thread_rows(b, thread)
    assert rows_a == rows_b == server_thread_rows(sync_server.database_url, tenant, thread)
    assert len(rows_b["langgraph_checkpoints"]) == 6 + 3  # the first run, then the fork: update, approve, publish
    on_a = build(SyncstoreSaver(a))
    assert history(on_a, config) == history(on_b, config)
    assert on_a.get_state(config).values["published"] == "a shorter post"  # the latest checkpoint, everywhere
    assert SyncstoreSaver(a).get_tuple(config).config == SyncstoreSaver(b).get_tuple(config).config
    # Checkpoints from two machines never compete for a row.
    assert server_conflicts(sync_server.database_url, tenant) == 0
