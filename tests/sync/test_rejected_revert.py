"""A push the server refuses for good is undone on the replica, against a real server.

The server here takes at most 5 changes per transaction, so a larger local
transaction is valid locally and refused there for good. After the round,
the replica holds the server's cells (values and clocks) in every row the
refused transaction wrote, except where a later local write stands; the
refused changes stay readable with their values; subscribers hear of the
undone rows with origin "reverted", like a rolled-back optimistic update.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import syncstore
from syncstore.core import protocol as p
from syncstore.sync import list_rejected
from syncstore.sync.connection import SyncConnection
from syncstore.sync.transport import Received, Transport

from .conftest import RunningServer, replica_cells, server_cells


@pytest.fixture(scope="module")
def strict(sync_database):
    running = RunningServer(sync_database, max_tx_changes=5)
    try:
        yield running
    finally:
        running.close()


def test_a_refused_transaction_is_undone_and_later_writes_stay(strict, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    token = strict.token(tenant)
    kept = [a.insert("tasks", {"title": f"synced {i}"}) for i in range(3)]
    a.sync(strict.url, token=token)
    heard: list[syncstore.Change] = []
    a.subscribe(None, heard.extend)

    with a.transaction():  # refused: 8 inserts and 2 edits in one transaction
        refused = a.insert_many("tasks", [{"title": f"refused {i}"} for i in range(8)])
        a.update("tasks", kept[0], {"title": "refused title", "priority": "high"})
        a.update("tasks", kept[1], {"title": "refused too"})
    a.update("tasks", kept[0], {"status": "completed"})  # later writes, before the Ack comes
    a.update("tasks", kept[1], {"title": "written after"})
    heard.clear()
    result = a.sync(strict.url, token=token)

    assert result.rejected == 1
    rows = {row["id"]: row for row in a.rows("tasks")}
    assert not set(refused) & set(rows)
    assert rows[kept[0]]["title"] == "synced 0" and rows[kept[0]]["priority"] == "medium"
    assert rows[kept[0]]["status"] == "completed" and rows[kept[1]]["title"] == "written after"
    assert replica_cells(a) == server_cells(strict.database_url, tenant)  # values and clocks
    undone = [c for c in heard if c.origin == "reverted"]
    assert {c.id for c in undone if c.op == "delete"} == set(refused)
    # (updated_at stays: the later edit stamped it too)
    assert [set(c.columns) for c in undone if c.id == kept[0]] == [{"title", "priority"}]
    (rejection,) = list_rejected(a)  # what was refused, values and all, for the application
    values = {c.id: c.values for c in rejection.changes}
    assert values[kept[0]]["title"] == "refused title" and {values[i]["title"] for i in refused} == {
        f"refused {i}" for i in range(8)
    }
    assert rejection.reverted_at is not None
    status = a.sync_status()
    assert status.reverting == 0 and status.rejected == 1 and status.pending_changes == 0

    b.sync(strict.url, token=token)  # another replica never saw any of it
    assert replica_cells(b) == replica_cells(a)


def test_a_refused_delete_brings_the_rows_back(strict, tenant, replicas):
    a = replicas()
    token = strict.token(tenant)
    ids = [a.insert("tasks", {"title": f"row {i}"}) for i in range(6)]
    a.sync(strict.url, token=token)
    with a.transaction():
        for row_id in ids:
            a.delete("tasks", row_id)
    assert a.sync(strict.url, token=token).rejected == 1
    assert sorted(row["id"] for row in a.rows("tasks")) == sorted(ids)
    assert replica_cells(a) == server_cells(strict.database_url, tenant)


def test_a_revert_cut_off_with_its_connection_is_done_by_the_next(strict, tenant, replicas, monkeypatch):
    a = replicas()
    token = strict.token(tenant)
    a.sync(strict.url, token=token)
    a.insert_many("tasks", [{"title": f"refused {i}"} for i in range(6)])
    # The connection ends before it could ask for the rows back.
    with monkeypatch.context() as patched:
        patched.setattr(SyncConnection, "_start_reverts", lambda self, session: None)
        assert a.sync(strict.url, token=token).rejected == 1
    assert a.count("tasks") == 6 and a.sync_status().reverting == 1
    a.sync(strict.url, token=token)
    assert a.count("tasks") == 0 and a.sync_status().reverting == 0
    assert list_rejected(a)[0].reverted_at is not None
    assert replica_cells(a) == server_cells(strict.database_url, tenant) == {}


class RowsAfterAChange(Transport):
    """Holds back the first Rows answer until a Changes has come after it, and
    runs ``hook`` (another replica's round) once the Rows came: a server change
    committed after the rows were read then reaches the replica before them."""

    hook: Any = None

    def __init__(self, url: str, **kw: Any):
        super().__init__(url, **kw)
        self._held: Any = None
        self._next: Any = None
        self._done = False

    def get(self, timeout: float | None) -> Any:
        if self._next is not None:
            item, self._next = self._next, None
            return item
        item = super().get(timeout)
        if not self._done and isinstance(item, Received) and isinstance(item.message, p.Rows):
            self._held, self._done = item, True
            type(self).hook()
            return None
        if self._held is not None and isinstance(item, Received) and isinstance(item.message, p.Changes):
            self._next, self._held = self._held, None
        return item


def test_a_server_change_that_comes_before_the_rows_is_not_lost_by_the_revert(strict, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    token = strict.token(tenant)
    row_id = a.insert("tasks", {"title": "first"})
    a.sync(strict.url, token=token)
    b.sync(strict.url, token=token)
    b.update("tasks", row_id, {"title": "from b"})  # older than A's refused write, merged after A's fetch
    time.sleep(0.005)
    with a.transaction():
        a.update("tasks", row_id, {"title": "refused"})
        a.insert_many("tasks", [{"title": f"refused {i}"} for i in range(6)])
    RowsAfterAChange.hook = lambda: b.sync(strict.url, token=token)
    assert a.sync(strict.url, token=token, transport_factory=RowsAfterAChange).rejected == 1
    assert a.get("tasks", row_id)["title"] == "from b"
    assert replica_cells(a) == server_cells(strict.database_url, tenant)
