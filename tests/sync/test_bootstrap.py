"""Bootstrap from the client's side: a fresh replica takes a snapshot, then the log;
shapes on the client; a bootstrap killed with -9 continues from its last chunk;
a replica whose cursor was compacted away re-snapshots by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import apsw
import pytest

import syncstore
from syncstore.core import protocol as p

from .conftest import replica_rows, server_rows

pytestmark = pytest.mark.postgres


def seed(store, n: int, **values) -> list[str]:
    return store.insert_many("tasks", [{"title": f"task {i}", **values} for i in range(n)])


def test_a_fresh_replica_takes_a_snapshot_not_the_history(chunky, tenant, replicas):
    writer, fresh = replicas("writer"), replicas("fresh")
    ids = seed(writer, 120)
    for k in range(100):
        writer.tasks.update(ids[0], title=f"edit {k}")
    writer.tasks.delete(ids[1])
    token = chunky.token(tenant)
    writer.sync(chunky.url, token=token)
    result = fresh.sync(chunky.url, token=token)
    assert result.snapshot_rows == 119  # each live row once; the hundred edits are one row
    assert result.received == 0  # nothing from the log: the snapshot's position is its end
    assert replica_rows(fresh) == server_rows(chunky.database_url, tenant)
    assert fresh.tasks.get(ids[0]).title == "edit 99"
    # The replica's clock moved past every cell it received: a local edit wins.
    newest = max(cell.hlc for row_id in ids[2:] for cell in fresh.cells("tasks", row_id).values())
    fresh.tasks.update(ids[2], title="local")
    assert fresh.cells("tasks", ids[2])["title"].hlc > newest
    # Then the log, live.
    writer.tasks.create("after")
    writer.sync(chunky.url, token=token)
    again = fresh.sync(chunky.url, token=token)
    assert again.snapshot_rows == 0 and again.received == 2  # the local edit came back, and the new row
    assert replica_rows(fresh) == server_rows(chunky.database_url, tenant)


def test_a_row_inserted_again_reaches_a_replica_that_bootstrapped_while_it_was_deleted(chunky, tenant, replicas):
    """The snapshot ships a deleted row with every cell its tombstone keeps: when
    the id is inserted again, the log entry carries only the cells that change
    on the server, so a cell written while the row was deleted (and still
    winning) must already be on the bootstrapped replica."""
    a, b, c, d = (replicas(name) for name in "abcd")
    token = chunky.token(tenant)
    (row,) = seed(a, 1)
    a.sync(chunky.url, token=token)
    c.sync(chunky.url, token=token)  # c holds the row
    a.tasks.delete(row)
    a.sync(chunky.url, token=token)
    time.sleep(0.005)  # clocks are milliseconds: each write below newer than the one before, whatever the site
    d.insert_many("tasks", [{"id": row, "title": "inserted again"}])  # newer than the delete
    time.sleep(0.005)
    c.tasks.update(row, status="in_progress")  # c has not seen the delete: the newest status
    c.sync(chunky.url, token=token)
    b.sync(chunky.url, token=token)  # b bootstraps while the row is deleted
    d.sync(chunky.url, token=token)  # the row comes back; c's status still wins on the server
    for store in (a, b, c, d):
        store.sync(chunky.url, token=token)
    expected = server_rows(chunky.database_url, tenant)
    assert expected[row]["title"] == "inserted again" and expected[row]["status"] == "in_progress"
    for store in (a, b, c, d):
        assert replica_rows(store) == expected


def test_shapes_on_the_client_and_a_row_moving_in(chunky, tenant, replicas):
    writer, partial = replicas("writer"), replicas("partial")
    token = chunky.token(tenant)
    web = seed(writer, 5, repository="acme/web")
    api = seed(writer, 5, repository="acme/api", description="details")
    writer.sync(chunky.url, token=token)
    shape = p.Shape("tasks", where={"repository": ["acme/web"]})
    result = partial.sync(chunky.url, token=token, shapes=[shape])
    assert result.snapshot_rows == 5 and sorted(replica_rows(partial)) == sorted(web)
    writer.tasks.update(api[0], repository="acme/web")  # moves in: arrives whole
    writer.tasks.update(api[1], title="not ours")
    writer.sync(chunky.url, token=token)
    partial.sync(chunky.url, token=token, shapes=[shape])
    moved = partial.tasks.get(api[0])
    assert moved.repository == "acme/web" and moved.description == "details" and moved.title == "task 0"
    assert partial.tasks.find(api[1]) is None
    # A new shape later: its rows come by snapshot, the others stay.
    more = partial.sync(chunky.url, token=token, shapes=[shape, p.Shape("tasks", where={"repository": ["acme/api"]})])
    assert more.snapshot_rows == 4
    assert replica_rows(partial) == server_rows(chunky.database_url, tenant)


BOOTSTRAP = textwrap.dedent(
    """
    import os, sys
    import syncstore
    store = syncstore.open(sys.argv[1])
    store.sync(sys.argv[2], token=os.environ["SYNCSTORE_TOKEN"], timeout=300)
    print("finished", flush=True)
    """
)


def snapshot_state(path: str) -> list[tuple[str, int, str]]:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.setbusytimeout(1000)
        return list(conn.execute("select state, position, resume from _ss_shapes where tbl = 'tasks'"))
    except apsw.Error:
        return []
    finally:
        conn.close()


def test_a_bootstrap_killed_with_minus_9_continues_from_its_last_chunk(chunky, tenant, replicas, tmp_path):
    writer = replicas("writer")
    token = chunky.token(tenant)
    ids = seed(writer, 3_000)
    writer.sync(chunky.url, token=token, timeout=120)
    path = str(tmp_path / "fresh.db")
    syncstore.open(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", BOOTSTRAP, path, chunky.url],
        env={**os.environ, "SYNCSTORE_TOKEN": token}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    cut = []
    while time.monotonic() < deadline:
        cut = [row for row in snapshot_state(path) if row[0] == "snapshot" and row[2]]
        if cut:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert cut, "the bootstrap never got under way"
    state, position, resume = snapshot_state(path)[0]
    assert state == "snapshot" and resume  # killed mid-way
    fresh = syncstore.open(path)
    try:
        had = fresh.count("tasks")
        assert 0 < had < 3_000
        # Meanwhile the server moved on: edits of rows received and not yet received.
        writer.tasks.update(ids[0], title="edited early")
        writer.tasks.update(ids[-1], title="edited late")
        writer.sync(chunky.url, token=token)
        result = fresh.sync(chunky.url, token=token, timeout=120)
        assert result.snapshot_rows <= 3_000 - had + 50  # continued from its last chunk, not from the start
        assert replica_rows(fresh) == server_rows(chunky.database_url, tenant)
        assert snapshot_state(path)[0][0] == "live"
    finally:
        fresh.close()


def test_a_replica_whose_cursor_was_compacted_away_rebuilds_by_itself(chunky, tenant, replicas):
    from syncstore_server import compaction
    from syncstore_server.store import open_store

    writer, away = replicas("writer"), replicas("away")
    token = chunky.token(tenant)
    ids = seed(writer, 10)
    writer.sync(chunky.url, token=token)
    away.sync(chunky.url, token=token)
    # While it is away: a row deleted (and its tombstone collected), another edited.
    writer.tasks.delete(ids[0])
    writer.tasks.update(ids[1], title="edited while away")
    writer.sync(chunky.url, token=token)
    local = away.tasks.create("written offline")

    async def compact():
        async with open_store(chunky.database_url) as store:
            return await compaction.compact(store, tenant=tenant, retention_s=0)

    (done,) = asyncio.run(compact())
    assert done.rows_collected == 1
    result = away.sync(chunky.url, token=token)
    assert result.resnapshots == 1 and result.snapshot_rows == 10  # 9 left + the one written offline
    assert away.tasks.find(ids[0]) is None and away.tasks.get(ids[1]).title == "edited while away"
    assert away.tasks.get(local.id).title == "written offline"
    assert replica_rows(away) == server_rows(chunky.database_url, tenant)
    assert away.sync_status().cursor >= done.oldest
    assert away.sync(chunky.url, token=token).resnapshots == 0


def test_a_chunk_applies_as_apply_remote_would_whatever_the_replica_holds(replicas):
    """New rows go in by one statement per chunk, rows held here (or buried here)
    through apply_remote: either way the same cells as apply_remote alone."""
    from syncstore.core import client_session as cs
    from syncstore.core.merge import Cell
    from syncstore.replica.store import RemoteChange
    from syncstore.sync.state import SyncState

    source, bulk, reference = replicas("source"), replicas("bulk"), replicas("reference")
    ids = seed(source, 6)
    source.tasks.update(ids[0], title="edited")  # cells at two clocks
    held, buried = seed(bulk, 1, title="mine") + seed(reference, 0), ids[1]
    rows = []
    for row_id in ids:
        cells = source.cells("tasks", row_id)
        rows.append(p.RowChange("tasks", row_id, {k: tuple(v) for k, v in cells.items()}))
    newer = {k: (v[0], v[1] + 10**6, v[2]) for k, v in rows[2].cells.items()}
    rows.append(p.RowChange("tasks", held[0], newer))  # a row the replica holds, newer here
    for store in (bulk, reference):
        store.apply_remote([RemoteChange("tasks", buried, {k: Cell(*v) for k, v in rows[1].cells.items()})])
        store.apply_remote([RemoteChange("tasks", buried, {"_deleted": Cell(1, rows[1].cells["title"][1] + 5, b"\x09" * 16)})])
    reference.apply_remote([RemoteChange("tasks", held[0], {k: Cell(*v) for k, v in bulk.cells("tasks", held[0]).items()})])
    SyncState(bulk).subscriptions([p.Shape("tasks")])
    SyncState(bulk).apply_snapshot(cs.SnapshotChunk("x", rows, 7, False, "0:x"))
    reference.apply_remote([RemoteChange("tasks", r.id, {k: Cell(*v) for k, v in r.cells.items()}) for r in rows])
    assert replica_rows(bulk) == replica_rows(reference)
    for row_id in (*ids, held[0]):
        assert bulk.cells("tasks", row_id) == reference.cells("tasks", row_id)
    assert bulk.tasks.find(buried) is None


def test_a_shape_the_schema_does_not_allow_stops_the_sync_for_good(chunky, tenant, replicas):
    from syncstore.errors import SyncError
    from syncstore.sync.background import retryable

    store = replicas()
    with pytest.raises(SyncError) as exc:
        store.sync(chunky.url, token=chunky.token(tenant), shapes=[p.Shape("tasks", where={"title": ["x"]})])
    assert exc.value.code == "bad_shape" and not retryable(exc.value)
    assert "indexed" in str(exc.value)
