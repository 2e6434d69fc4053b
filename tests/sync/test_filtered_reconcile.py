"""Replicas following filtered shapes fetch rows by id to reconcile with the
server: after an Ack, the rows whose filtered columns their pushes wrote;
after a snapshot chunk, the rows of theirs inside the shape that the chunk
left out. A copy that lies inside a shape while the server's row lies
outside it then follows the server's row out (docs/shapes-bootstrap-compaction.md)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from syncstore.core import protocol as p
from syncstore.errors import SyncError
from syncstore.sync.transport import Closed, Received, Transport

from .conftest import replica_rows, server_rows

pytestmark = pytest.mark.postgres

R1 = p.Shape("tasks", where={"repository": ["r1"]})
ELSEWHERE = p.Shape("tasks", where={"repository": ["elsewhere"]})


# Some pushes here end with a row the replica's shapes select, so that
# entry comes back to it too (its cursor then passes the push's own entries
# by the stream, not only by the UpToDate after the Ack).


def in_repository(rows: dict[str, dict], repository: str) -> dict[str, dict]:
    return {i: values for i, values in rows.items() if values["repository"] == repository}


def test_a_losing_move_into_the_shape_follows_the_winner_out(sync_server, tenant, replicas):
    """A follows repository r1. B moves the row to r2 (A gets the move: the
    row lingers at r2). Offline, A moves it back to r1; C, later, moves it to
    r3 and syncs first. A's push loses, and its entry is routed to none of
    A's shapes (the row is at r3 before and after): the fetch after the Ack
    brings the server's row, and A's copy leaves r1."""
    a, b, c = replicas("a"), replicas("b"), replicas("c")
    url, token = sync_server.url, sync_server.token(tenant)
    (row,) = b.insert_many("tasks", [{"title": "t", "repository": "r1"}])
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[R1])
    c.sync(url, token=token)
    assert a.tasks.get(row).repository == "r1"
    time.sleep(0.005)  # clocks are milliseconds: each write newer than the one before, whatever the site
    b.tasks.update(row, repository="r2")
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[R1])
    assert a.tasks.get(row).repository == "r2"  # moved out: it lingers
    time.sleep(0.005)
    a.tasks.update(row, repository="r1")  # offline
    (mine,) = a.insert_many("tasks", [{"title": "mine", "repository": "r1"}])  # comes back (see above)
    time.sleep(0.005)
    c.sync(url, token=token)
    c.tasks.update(row, repository="r3")  # newer: wins
    c.sync(url, token=token)
    a.sync(url, token=token, shapes=[R1])
    server = server_rows(sync_server.database_url, tenant)
    assert server[row]["repository"] == "r3"
    assert a.tasks.get(row).repository == "r3"
    assert in_repository(replica_rows(a), "r1") == in_repository(server, "r1") == {mine: server[mine]}
    assert replica_rows(a)[row] == server[row]


def test_a_row_pushed_before_the_snapshot_and_moved_out_since_leaves_the_shape(sync_server, tenant, replicas):
    """A pushes a task at r1 while following another shape; B moves it to r2;
    then A follows r1. The snapshot leaves the row out (it is at r2) and the
    log is followed from after the move: A fetches its rows inside the shape
    that the snapshot left out, and the row follows the move."""
    a, b = replicas("a"), replicas("b")
    url, token = sync_server.url, sync_server.token(tenant)
    (row,) = a.insert_many("tasks", [{"title": "t", "repository": "r1"}])
    a.insert_many("tasks", [{"title": "marker", "repository": "elsewhere"}])  # comes back (see above)
    a.sync(url, token=token, shapes=[ELSEWHERE])  # the task is pushed, outside A's shape
    b.sync(url, token=token)
    time.sleep(0.005)
    b.tasks.update(row, repository="r2")
    b.sync(url, token=token)
    result = a.sync(url, token=token, shapes=[R1])
    assert result.snapshot_rows == 0
    server = server_rows(sync_server.database_url, tenant)
    assert a.tasks.get(row).repository == "r2"
    assert replica_rows(a)[row] == server[row]


def test_a_row_lingering_from_another_shape_leaves_a_new_shape_it_matches_here(sync_server, tenant, replicas):
    """A follows completed tasks. Its task moves out (pending: A gets the
    move and keeps the row, at r1), then on to r2 (not routed to A). A then
    also follows r1: its copy matches, the server's row does not; the chunk
    reconciliation brings the row at r2."""
    a, b = replicas("a"), replicas("b")
    url, token = sync_server.url, sync_server.token(tenant)
    done = p.Shape("tasks", where={"status": ["completed"]})
    (row,) = b.insert_many("tasks", [{"title": "t", "status": "completed", "repository": "r1"}])
    (other,) = b.insert_many("tasks", [{"title": "u", "status": "pending", "repository": "r1"}])
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[done])
    time.sleep(0.005)
    b.tasks.update(row, status="pending")
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[done])
    assert a.tasks.get(row).status == "pending"  # lingering
    time.sleep(0.005)
    b.tasks.update(row, repository="r2")
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[done])
    assert a.tasks.get(row).repository == "r1"  # not routed: outside A's shape before and after
    a.sync(url, token=token, shapes=[done, R1])
    server = server_rows(sync_server.database_url, tenant)
    assert a.tasks.get(row).repository == "r2"
    assert in_repository(replica_rows(a), "r1") == in_repository(server, "r1") == {other: server[other]}


class PushWhenLive(Transport):
    """Holds the round's pushes until the stream is up to date, as for a
    replica that writes while connected: the stream is live, and the entry
    the push adds comes back only if a shape selects it."""

    def __init__(self, url: str, **kw: Any):
        super().__init__(url, **kw)
        self._held: list[p.Message] = []
        self._live = False

    def send(self, message: p.Message) -> None:
        if isinstance(message, p.Push) and not self._live:
            self._held.append(message)
        else:
            super().send(message)

    def get(self, timeout: float | None) -> Any:
        item = super().get(timeout)
        if not self._live and isinstance(item, Received) and isinstance(item.message, (p.UpToDate, p.Changes)):
            self._live = True
            for message in self._held:
                super().send(message)
        return item


def test_a_write_outside_every_shape_of_the_writer_ends_the_round(sync_server, tenant, replicas):
    """The round waits until the cursor passes the entry the push added, which
    none of the writer's shapes selects: the server reads its stream to the end
    of the log after the Ack, and its UpToDate passes the entry."""
    a = replicas("a")
    url, token = sync_server.url, sync_server.token(tenant)
    a.sync(url, token=token, shapes=[R1])
    a.insert_many("tasks", [{"title": "elsewhere", "repository": "r2"}])
    # Raises SyncError if the round never settles.
    result = a.sync(url, token=token, shapes=[R1], timeout=15, transport_factory=PushWhenLive)
    assert result.acked_seq == a.sync_status().last_seq
    assert server_rows(sync_server.database_url, tenant) == replica_rows(a)


class CutAfterAck(Transport):
    """Drops the connection right after the first Ack: the fetch it starts is
    never answered on this connection."""

    def __init__(self, url: str, **kw: Any):
        super().__init__(url, **kw)
        self._acked = False

    def get(self, timeout: float | None) -> Any:
        if self._acked:
            return Closed(SyncError("cut by the test"))
        item = super().get(timeout)
        if isinstance(item, Received) and isinstance(item.message, p.Ack):
            self._acked = True
        return item


def test_a_fetch_cut_off_with_its_connection_is_asked_again_on_the_next(sync_server, tenant, replicas):
    """A's move of a row into its shape loses on the server, and the
    connection drops between the Ack and the fetch's answer. The replica keeps
    how far its acked changes were reconciled, so the next connection fetches
    that row again and A's copy follows the server's row out of the shape."""
    a, b = replicas("a"), replicas("b")
    url, token = sync_server.url, sync_server.token(tenant)
    (row,) = b.insert_many("tasks", [{"title": "t", "repository": "r1"}])
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[R1])
    time.sleep(0.005)  # clocks are milliseconds: each write newer than the one before, whatever the site
    b.tasks.update(row, repository="r2")
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[R1])  # the move out reaches A: the row lingers at r2
    time.sleep(0.005)
    a.tasks.update(row, repository="r1")  # offline: back into A's shape
    time.sleep(0.005)
    b.tasks.update(row, repository="r3")  # newer: wins
    b.sync(url, token=token)
    with pytest.raises(SyncError):
        a.sync(url, token=token, shapes=[R1], transport_factory=CutAfterAck)
    assert a.sync_status().pending_changes == 0 and a.tasks.get(row).repository == "r1"  # acked, not reconciled
    a.sync(url, token=token, shapes=[R1])
    assert a.tasks.get(row).repository == "r3"
    assert replica_rows(a)[row] == server_rows(sync_server.database_url, tenant)[row]
