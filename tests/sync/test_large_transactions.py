"""Local transactions of any size, against a real server and PostgreSQL.

A transaction larger than the server's frame and than ``max_tx_changes`` goes
up in parts that the server stages and merges whole; the merge reaches the log
as a group of entries that other replicas apply whole. No reader sees part of
it: not PostgreSQL's, not a live second replica's. A connection cut between
parts, either way, resumes without doubling or losing anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from typing import Any

import apsw
import msgspec
import pytest

import syncstore
from syncstore.core import protocol as p
from syncstore.errors import SyncError
from syncstore.legacy import import_legacy
from syncstore.sync.transport import Closed, Received, Transport

from .conftest import RunningServer, psycopg

pytestmark = pytest.mark.postgres

WAIT = 60.0  # generous upper bounds: nothing here waits on a fixed time
MESSAGES = 3_000  # changes of the large transaction (~1 MB: many frames of 64 KiB)


@pytest.fixture(scope="module")
def small(sync_database):
    """A server with 64 KiB frames and at most 200 changes per pushed
    transaction: a transaction of thousands of changes exceeds both."""
    running = RunningServer(sync_database, max_frame=64 * 1024, max_tx_changes=200)
    try:
        yield running
    finally:
        running.close()


def write_large(store: Any, messages: int = MESSAGES) -> tuple[str, list[str]]:
    """One local transaction: a task and ``messages`` messages of it."""
    with store.transaction():
        task = store.tasks.create("a long conversation")
        ids = store.insert_many(
            "task_messages",
            [
                {"task_id": task.id, "position": i, "role": "user", "content": f"message {i} " + "x" * 300}
                for i in range(messages)
            ],
        )
    return task.id, ids


def pg(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def pg_messages(database_url: str, tenant: str) -> int:
    return pg(database_url, "select count(*) from syncstore.task_messages where tenant = %s", tenant)[0][0]


def staged(database_url: str, tenant: str) -> tuple[int, int]:
    """(staged changes, staged_seq) of the tenant's sites."""
    changes = pg(database_url, "select count(*) from syncstore.staged_changes where tenant = %s", tenant)[0][0]
    seq = pg(database_url, "select coalesce(max(staged_seq), 0) from syncstore.staged_transactions where tenant = %s", tenant)
    return changes, seq[0][0]


def log_group(database_url: str, tenant: str, site: bytes, origin_tx: int) -> list[tuple[int, int]]:
    """(seq, group_end) of the log entries the merge of one local transaction made."""
    rows = pg(
        database_url,
        "select seq, payload from syncstore.change_log where tenant = %s and origin_site = %s and origin_tx = %s "
        "order by seq",
        tenant, site, origin_tx,
    )  # fmt: skip
    return [(seq, msgspec.msgpack.decode(payload, type=p.ServerTx).group_end) for seq, payload in rows]


def local_count(path: str, table: str = "task_messages") -> int:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]
    finally:
        conn.close()


class Recording(Transport):
    """A real websocket that keeps the messages it sent, and the Welcome."""

    sent: list[p.Message] = []
    welcome: p.Welcome | None = None

    def send(self, message: p.Message) -> None:
        super().send(message)
        Recording.sent.append(message)

    def get(self, timeout: float | None) -> Any:
        item = super().get(timeout)
        if isinstance(item, Received) and isinstance(item.message, p.Welcome):
            Recording.welcome = item.message
        return item


def test_a_transaction_larger_than_a_frame_and_a_push_reaches_the_server_whole(small, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    url, token = small.url, small.token(tenant)
    b.sync(url, token=token)  # b follows the log from here
    task_id, ids = write_large(a)
    after = a.tasks.create("written after it")
    (tx,) = {row[0] for row in a.connection.execute("select tx from _ss_changes where pk = ?", (ids[0],))}
    Recording.sent = []
    result = a.sync(url, token=token, transport_factory=Recording, timeout=WAIT)

    pushes = [m for m in Recording.sent if isinstance(m, p.Push)]
    parts = [m.txs[0] for m in pushes if m.txs[0].is_part]
    assert len(parts) >= MESSAGES // 200  # parts of at most 200 changes
    assert all(len(part.changes) <= 200 and part.total == MESSAGES + 1 for part in parts)
    assert all(len(p.encode(m)) <= 64 * 1024 for m in pushes)
    assert result.pushed == MESSAGES + 2 and result.rejected == 0
    assert pg_messages(small.database_url, tenant) == MESSAGES
    assert pg(small.database_url, "select count(*) from syncstore.tasks where tenant = %s", tenant)[0][0] == 2
    assert staged(small.database_url, tenant) == (0, 0)  # the staged parts went with the merge
    # One group of log entries, each within the frame, the group's end in each.
    group = log_group(small.database_url, tenant, a.site_id, tx)
    assert len(group) > 1 and all(end == group[-1][0] for _, end in group)
    sizes = pg(
        small.database_url,
        "select octet_length(payload) from syncstore.change_log where tenant = %s and origin_tx = %s", tenant, tx,
    )  # fmt: skip
    assert max(size for (size,) in sizes) <= 64 * 1024

    received = b.sync(url, token=token, timeout=WAIT)
    assert b.count("task_messages") == MESSAGES and b.tasks.get(after.id) is not None
    assert received.cursor >= group[-1][0] and local_count(b.path, "_ss_group_parts") == 0
    assert {m["id"] for m in b.query("select id from task_messages")} == set(ids)


class Gate:
    """The pushing client waits at its first staged Ack until a reader of
    PostgreSQL has looked after it (so a read surely falls between two parts)."""

    staged = threading.Event()
    observed = threading.Event()


class GatedAfterStaged(Transport):
    def get(self, timeout: float | None) -> Any:
        item = super().get(timeout)
        if isinstance(item, Received) and isinstance(item.message, p.Ack) and item.message.staged_seq:
            if not Gate.staged.is_set():
                Gate.staged.set()
                assert Gate.observed.wait(WAIT)
        return item


def test_no_reader_sees_part_of_it_neither_postgres_nor_a_live_replica(small, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    url, token = small.url, small.token(tenant)
    seen_pg: list[tuple[int, int]] = []
    seen_b: list[int] = []
    stop = threading.Event()
    Gate.staged.clear()
    Gate.observed.clear()

    def watch_postgres() -> None:
        with psycopg.connect(small.database_url, autocommit=True) as conn:
            while not stop.is_set():
                armed = Gate.staged.is_set()
                seen_pg.append(
                    conn.execute(
                        "select (select count(*) from syncstore.task_messages where tenant = %(t)s), "
                        "(select count(*) from syncstore.staged_changes where tenant = %(t)s)",
                        {"t": tenant},
                    ).fetchone()
                )
                if armed:
                    Gate.observed.set()

    def watch_b() -> None:
        while not stop.is_set():
            seen_b.append(local_count(b.path))

    with b.start_sync(url, token=token) as live:
        assert live.wait_synced(WAIT)
        watchers = [threading.Thread(target=watch_postgres), threading.Thread(target=watch_b)]
        for thread in watchers:
            thread.start()
        try:
            write_large(a)
            a.sync(url, token=token, transport_factory=GatedAfterStaged, timeout=WAIT)
            while b.count("task_messages") < MESSAGES and live.running:
                live.wait_synced(1.0)
        finally:
            stop.set()
            for thread in watchers:
                thread.join()
    assert {count for count, _ in seen_pg} <= {0, MESSAGES} and seen_pg[-1][0] == MESSAGES
    assert any(count == 0 and staging > 0 for count, staging in seen_pg)  # looked while it was being staged
    assert set(seen_b) <= {0, MESSAGES} and local_count(b.path) == MESSAGES


class CutAfterStaged(Transport):
    """Drops the connection once ``parts`` parts are acked as staged."""

    parts = 3

    def __init__(self, url: str, **kw: Any):
        super().__init__(url, **kw)
        self._staged = 0

    def get(self, timeout: float | None) -> Any:
        if self._staged >= self.parts:
            return Closed(SyncError("cut by the test"))
        item = super().get(timeout)
        if isinstance(item, Received) and isinstance(item.message, p.Ack) and item.message.staged_seq:
            self._staged += 1
        return item


def test_a_push_cut_between_parts_resumes_after_what_is_staged(small, tenant, replicas):
    a = replicas("a")
    url, token = small.url, small.token(tenant)
    _, ids = write_large(a)
    with pytest.raises(SyncError, match="cut by the test"):
        a.sync(url, token=token, transport_factory=CutAfterStaged, timeout=WAIT)
    changes, staged_seq = staged(small.database_url, tenant)
    assert changes >= 3 and staged_seq > 0
    assert pg_messages(small.database_url, tenant) == 0  # staged, not merged: nothing shows

    Recording.sent = []
    result = a.sync(url, token=token, transport_factory=Recording, timeout=WAIT)
    parts = [m.txs[0] for m in Recording.sent if isinstance(m, p.Push)]
    # (The part in flight at the cut may have been staged after it.)
    assert Recording.welcome is not None and Recording.welcome.staged_seq >= staged_seq
    resumed = Recording.welcome.staged_seq
    assert parts[0].changes[0].seq == resumed + 1  # went on after what was staged
    assert sum(len(part.changes) for part in parts) == MESSAGES + 1 - resumed
    assert result.acked_seq == a.sync_status().last_seq and result.rejected == 0
    found = pg(small.database_url, "select id from syncstore.task_messages where tenant = %s", tenant)
    assert sorted(row[0] for row in found) == sorted(ids)  # each exactly once
    assert staged(small.database_url, tenant) == (0, 0)


PUSHER = textwrap.dedent(
    """
    import os, sys
    import syncstore
    store = syncstore.open(sys.argv[1])
    # One part in flight at a time: a long push to kill in the middle of.
    store.sync(sys.argv[2], token=os.environ["SYNCSTORE_TOKEN"], timeout=300, max_batch=50, max_in_flight=1)
    """
)


def test_kill_9_of_the_client_between_parts_loses_nothing_and_doubles_nothing(small, tenant, tmp_path):
    path = str(tmp_path / "pusher.db")
    with syncstore.open(path) as store:
        _, ids = write_large(store)
        site = store.site_id
    env = {**os.environ, "SYNCSTORE_TOKEN": small.token(tenant)}
    proc = subprocess.Popen([sys.executable, "-c", PUSHER, path, small.url], env=env, stderr=subprocess.PIPE, text=True)
    try:
        while staged(small.database_url, tenant)[1] < 500 and proc.poll() is None:
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    changes, at_kill = staged(small.database_url, tenant)
    assert 500 <= at_kill < MESSAGES, "the kill must land between two parts"
    assert pg_messages(small.database_url, tenant) == 0

    with syncstore.open(path) as store:
        Recording.sent = []
        store.sync(small.url, token=small.token(tenant), transport_factory=Recording, timeout=WAIT)
        first = next(m for m in Recording.sent if isinstance(m, p.Push)).txs[0]
        assert Recording.welcome is not None and Recording.welcome.staged_seq >= at_kill
        assert first.changes[0].seq == Recording.welcome.staged_seq + 1  # went on after what was staged
        assert store.sync_status().pending_changes == 0
    found = pg(small.database_url, "select id from syncstore.task_messages where tenant = %s", tenant)
    assert sorted(row[0] for row in found) == sorted(ids)
    entries = pg(
        small.database_url,
        "select count(distinct origin_tx) from syncstore.change_log where tenant = %s and origin_site = %s", tenant, site,
    )  # fmt: skip
    assert entries == [(1,)] and staged(small.database_url, tenant) == (0, 0)


class CutInsideGroup(Transport):
    """Drops the connection after receiving ``parts`` parts of a group."""

    parts = 2

    def __init__(self, url: str, **kw: Any):
        super().__init__(url, **kw)
        self._parts = 0

    def get(self, timeout: float | None) -> Any:
        if self._parts >= self.parts:
            return Closed(SyncError("cut by the test"))
        item = super().get(timeout)
        if isinstance(item, Received) and isinstance(item.message, p.Changes):
            self._parts += sum(1 for tx in item.message.txs if tx.continued)
        return item


def test_a_group_cut_off_before_its_end_is_received_again_whole(small, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    url, token = small.url, small.token(tenant)
    b.sync(url, token=token)
    cursor = b.sync_status().cursor
    write_large(a)
    a.sync(url, token=token, timeout=WAIT)

    with pytest.raises(SyncError, match="cut by the test"):
        b.sync(url, token=token, transport_factory=CutInsideGroup, timeout=WAIT)
    # Parts kept aside, none applied, the cursor still before the group.
    assert local_count(b.path, "_ss_group_parts") >= 2
    assert b.count("task_messages") == 0 and b.sync_status().cursor == cursor

    b.sync(url, token=token, timeout=WAIT)
    assert b.count("task_messages") == MESSAGES and local_count(b.path, "_ss_group_parts") == 0


def test_a_transaction_over_the_servers_limit_is_refused_whole_and_blocks_nothing(sync_database, tenant, replicas):
    strict = RunningServer(sync_database, max_tx_changes=100, max_staged_changes=1_000)
    try:
        a = replicas("a")
        url, token = strict.url, strict.token(tenant)
        first = a.tasks.create("before")
        write_large(a, 1_500)
        after = a.tasks.create("after")
        result = a.sync(url, token=token, timeout=WAIT)
    finally:
        strict.close()
    assert result.rejected == 1 and a.sync_status().pending_changes == 0
    (code,) = {row[0] for row in pg(sync_database, "select code from syncstore.rejections where tenant = %s", tenant)}
    assert code == "tx_too_large"
    assert pg_messages(sync_database, tenant) == 0 and staged(sync_database, tenant) == (0, 0)
    titles = {row[0] for row in pg(sync_database, "select title from syncstore.tasks where tenant = %s", tenant)}
    assert titles == {first.title, after.title}


def legacy_export(tasks: int, messages: int) -> dict[str, Any]:
    """An export like the old app's: ``tasks`` tasks of ``messages`` messages each, ~600 bytes a message."""
    items = []
    for i in range(tasks):
        items.append(
            {
                "id": str(uuid.uuid4()),
                "title": f"Task {i}: make the integration suite pass again",
                "description": "",
                "messages": [
                    {"role": "user" if k % 2 else "assistant", "type": "message",
                     "data": {"type": "output_text", "text": f"step {k}: " + "changed the fixture " * 28,
                              "annotations": []}}
                    for k in range(messages)
                ],  # fmt: skip
                "status": "DONE",
                "branch": f"task-{i}",
                "sessionId": f"ibx{i}",
                "repository": "acme/shop",
                "createdAt": "2025-07-17T10:00:00.000Z",
                "updatedAt": "2025-07-17T10:05:00.000Z",
                "isArchived": False,
                "mode": "code",
                "hasChanges": True,
            }
        )
    return {
        "task-store": json.dumps({"state": {"tasks": items}, "version": 0}),
        "environments": json.dumps({"state": {"environments": []}, "version": 0}),
    }


def test_a_legacy_import_larger_than_a_frame_syncs_to_the_server_and_another_replica(
    sync_server, tenant, replicas, tmp_path
):
    """600 tasks of 10 messages: one local transaction of ~4.5 MB, more than
    the server's 4 MiB frame (before, it waited in front of every later write)."""
    a, b = replicas("a"), replicas("b")
    url, token = sync_server.url, sync_server.token(tenant)
    b.sync(url, token=token)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(legacy_export(600, 10)))
    report = import_legacy(a, str(export))
    assert report.tasks.imported == 600 and report.messages.imported == 6_000
    (size,) = a.connection.execute("select sum(length(cols)) from _ss_changes").fetchone()
    assert size > 4 * 1024 * 1024
    later = a.tasks.create("written after the import")

    result = a.sync(url, token=token, timeout=WAIT)
    assert result.rejected == 0 and a.sync_status().pending_changes == 0
    assert pg_messages(sync_server.database_url, tenant) == 6_000
    b.sync(url, token=token, timeout=WAIT)
    assert b.count("task_messages") == 6_000 and b.count("tasks") == 601 and b.tasks.get(later.id) is not None
