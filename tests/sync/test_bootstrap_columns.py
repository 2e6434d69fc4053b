"""Columnar snapshot chunks on the client: rows the replica does not hold go
in by one statement, the others through apply_remote, the same cells as
apply_remote alone; a chunk with a value the column does not take goes
through the full checks, which keep that row aside and apply the others."""

from __future__ import annotations

from syncstore.core import client_session as cs
from syncstore.core import protocol as p
from syncstore.core.merge import Cell
from syncstore.replica.store import RemoteChange
from syncstore.sync.state import SyncState

from .conftest import replica_rows

SITES = (b"\x01" * 16, b"\x02" * 16)


def columns_of(store, ids: list[str], *, hlc_shift: dict[str, int] | None = None) -> p.Columns:
    """The rows as a server sends them column by column (one clock per row)."""
    names = [c for c in store.cells("tasks", ids[0]) if c != "_deleted"]
    shift = hlc_shift or {}
    values, hlcs = [[] for _ in names], []
    for row_id in ids:
        cells = store.cells("tasks", row_id)
        for column, name in zip(values, names):
            column.append(cells[name].value)
        hlcs.append(max(c.hlc for c in cells.values()) + shift.get(row_id, 0))
    return p.Columns("tasks", names, list(ids), values, hlcs, list(SITES), [k % 2 for k in range(len(ids))])


def test_a_columnar_chunk_applies_as_apply_remote_would(replicas):
    source, bulk, reference = replicas("source"), replicas("bulk"), replicas("reference")
    ids = source.insert_many("tasks", [{"title": f"task {i}"} for i in range(8)])
    held = bulk.insert_many("tasks", [{"title": "mine"}])  # held here, older than what arrives
    chunk = columns_of(source, ids)
    names = [*chunk.columns]
    newer = p.Columns(
        "tasks", names, held, [[c[0]] for c in chunk.values], [chunk.hlcs[0] + 10**6], [SITES[0]], [0]
    )
    for store in (bulk, reference):
        # A row buried here (deleted later than the snapshot's clock for it) stays deleted.
        row = chunk.row_changes()[1]
        store.apply_remote([RemoteChange("tasks", row.id, {k: Cell(*v) for k, v in row.cells.items()})])
        store.apply_remote([RemoteChange("tasks", row.id, {"_deleted": Cell(1, chunk.hlcs[1] + 5, SITES[1])})])
    reference.apply_remote([RemoteChange("tasks", held[0], {k: Cell(*v) for k, v in bulk.cells("tasks", held[0]).items()})])
    state = SyncState(bulk)
    (sub,) = state.subscriptions([p.Shape("tasks")])
    state.apply_snapshot(cs.SnapshotChunk(sub.id, [], 7, False, "0:x", [], chunk))
    state.apply_snapshot(cs.SnapshotChunk(sub.id, [], 7, False, "0:y", [], newer))
    for part in (chunk, newer):
        reference.apply_remote(
            RemoteChange("tasks", r.id, {k: Cell(*v) for k, v in r.cells.items()}) for r in part.row_changes()
        )
    assert replica_rows(bulk) == replica_rows(reference)
    for row_id in (*ids, *held):
        assert bulk.cells("tasks", row_id) == reference.cells("tasks", row_id)
    assert bulk.tasks.find(ids[1]) is None
    assert bulk.tasks.get(held[0]).title == "task 0"
    # The replica's clock moved past every cell it received: a local edit wins.
    bulk.tasks.update(ids[2], title="local")
    assert bulk.cells("tasks", ids[2])["title"].hlc > max(chunk.hlcs + newer.hlcs)
    assert state.snapshot_progress()[sub.id] == ("snapshot", 7, "0:y")


def test_a_columnar_chunk_with_a_bad_value_applies_the_others_and_reports_that_row(replicas):
    """A row the replica cannot take is kept in _ss_sync_skipped, not applied;
    failing the chunk would fail every later sync too. The chunk's other rows
    and the snapshot's progress are applied together, as always."""
    source, fresh = replicas("source"), replicas("fresh")
    ids = source.insert_many("tasks", [{"title": f"task {i}"} for i in range(4)])
    chunk = columns_of(source, ids)
    title = chunk.columns.index("title")
    values = [list(c) for c in chunk.values]
    values[title][2] = 12345  # not text
    bad = p.Columns(chunk.table, chunk.columns, chunk.ids, values, chunk.hlcs, chunk.sites, chunk.site_index)
    state = SyncState(fresh)
    (sub,) = state.subscriptions([p.Shape("tasks")])
    state.apply_snapshot(cs.SnapshotChunk(sub.id, [], 7, False, "0:x", [], bad))
    assert sorted(replica_rows(fresh)) == sorted(i for k, i in enumerate(chunk.ids) if k != 2)
    assert state.snapshot_progress()[sub.id] == ("snapshot", 7, "0:x")
    assert state.skipped_rows() == 1
    (skipped,) = fresh.query("select tbl, pk, problem from _ss_sync_skipped")
    assert (skipped["tbl"], skipped["pk"]) == ("tasks", chunk.ids[2]) and "expected text" in skipped["problem"]
