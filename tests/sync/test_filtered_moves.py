"""Rows moving between the shapes of one replica, on the real server: a row
entering or leaving any of a stream's shapes arrives whole
(docs/shapes-bootstrap-compaction.md), even when it was inside another of
the replica's shapes, because that shape's snapshot may have been read after
the row left it. Here the replica adds a shape while its other shape is live:
the stream goes on from the live shape's cursor, older than the new shape's
snapshot."""

from __future__ import annotations

import time

import pytest

from syncstore.core import protocol as p

from .conftest import replica_rows, server_rows

pytestmark = pytest.mark.postgres

R1 = p.Shape("tasks", where={"repository": ["r1"]})
R2_OPEN = p.Shape("tasks", where={"repository": ["r2"], "status": ["pending"]})


def matching(rows: dict[str, dict], repository: str, status: str | None = None) -> dict[str, dict]:
    return {
        i: values
        for i, values in rows.items()
        if values["repository"] == repository and status in (None, values["status"])
    }


def test_a_row_moving_into_a_live_shape_from_a_shape_being_added_arrives_whole(sync_server, tenant, replicas):
    """A follows pending tasks at r2; task R is at r1. B moves R to r2. A
    then also follows r1: that snapshot, read after the move, leaves R out,
    and the stream of the r2 shape, from A's cursor before the move, meets R
    moving out of r1 and into r2. R must arrive whole (its title too), not as
    the moved cells of a row A was thought to hold."""
    a, b = replicas("a"), replicas("b")
    url, token = sync_server.url, sync_server.token(tenant)
    (row,) = b.insert_many("tasks", [{"title": "t", "status": "pending", "repository": "r1"}])
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[R2_OPEN])
    assert row not in replica_rows(a)
    time.sleep(0.005)  # clocks are milliseconds: the move is newer than the insert, whatever the site
    b.tasks.update(row, repository="r2")
    b.sync(url, token=token)
    result = a.sync(url, token=token, shapes=[R2_OPEN, R1])
    assert result.snapshot_rows == 0  # R is at r2 when the r1 snapshot is read
    server = server_rows(sync_server.database_url, tenant)
    assert replica_rows(a)[row] == server[row]
    assert a.tasks.get(row).title == "t"
    assert matching(replica_rows(a), "r2", "pending") == matching(server, "r2", "pending") == {row: server[row]}


def test_a_row_leaving_a_shape_being_added_arrives_whole_outside_the_live_one(sync_server, tenant, replicas):
    """As above, with R completed: moving to r2 takes it out of r1 and into
    none of A's shapes. Sent as the moved cell alone, A's copy would be a
    task at r2 with the default status (pending), inside A's r2 shape, while
    the server's R lies outside it."""
    a, b = replicas("a"), replicas("b")
    url, token = sync_server.url, sync_server.token(tenant)
    (row,) = b.insert_many("tasks", [{"title": "t", "status": "completed", "repository": "r1"}])
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[R2_OPEN])
    time.sleep(0.005)
    b.tasks.update(row, repository="r2")
    b.sync(url, token=token)
    a.sync(url, token=token, shapes=[R2_OPEN, R1])
    server = server_rows(sync_server.database_url, tenant)
    assert matching(server, "r2", "pending") == {}
    assert matching(replica_rows(a), "r2", "pending") == {}
    assert replica_rows(a)[row] == server[row]
