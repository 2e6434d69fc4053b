"""The sync client's local state in a real SQLite replica, with no server:
applying server transactions, conflict records and their resolution."""

from __future__ import annotations

import pytest

from syncstore.core import protocol as p
from syncstore.core.merge import DELETED
from syncstore.errors import NotFoundError, ValidationError
from syncstore.sync import get_conflict, list_conflicts, resolve_conflict
from syncstore.sync.state import SyncState

OTHER = bytes(range(16))


def conflict(cid: str, row_id: str, column: str, winner, loser, *, stamp: int = 10) -> p.ConflictRecord:
    return p.ConflictRecord(
        id=cid, table="tasks", row_id=row_id, column=column,
        winner_value=winner, winner_hlc=stamp + 1, winner_site=OTHER,
        loser_value=loser, loser_hlc=stamp, loser_site=OTHER,
        incoming_won=True, created_at="2026-01-01T00:00:00.000000Z",
    )  # fmt: skip


@pytest.fixture
def task(store):
    return store.tasks.create("base")


def test_a_server_transaction_applies_whole_with_its_cursor_and_conflicts(store, task):
    state = SyncState(store)
    stamp = store.cells("tasks", task.id)["title"].hlc + 1000
    tx = p.ServerTx(
        seq=7,
        changes=[p.RowChange("tasks", task.id, {"title": ("from afar", stamp, OTHER)})],
        conflicts=[conflict("c1", task.id, "title", "from afar", "base")],
    )
    applied = state.apply(tx)
    assert [c.origin for c in applied] == ["remote"]
    assert store.tasks.get(task.id).title == "from afar" and state.cursor == 7
    assert store.clock.last >= stamp  # the local clock moved past the remote write
    assert [c.id for c in list_conflicts(store)] == ["c1"]
    assert state.apply(tx) == [] and len(list_conflicts(store)) == 1  # a duplicate changes nothing


def test_a_bad_server_transaction_leaves_nothing_behind(store, task):
    state = SyncState(store)
    bad = p.ServerTx(
        seq=3,
        changes=[p.RowChange("tasks", task.id, {"status": ("no such status", 10**15, OTHER)})],
        conflicts=[conflict("c9", task.id, "status", "x", "y")],
    )
    with pytest.raises(ValidationError):
        state.apply(bad)
    assert state.cursor == 0 and list_conflicts(store) == []


def test_conflict_ids_resolve_by_unique_prefix(store, task):
    state = SyncState(store)
    state.apply(p.ServerTx(seq=1, changes=[], conflicts=[conflict("abc-1", task.id, "title", "a", "b"), conflict("abd-2", task.id, "description", "c", "d")]))
    assert get_conflict(store, "abc").id == "abc-1"
    with pytest.raises(ValidationError):
        get_conflict(store, "ab")
    with pytest.raises(NotFoundError):
        get_conflict(store, "zzz")
    with pytest.raises(NotFoundError):
        get_conflict(store, "a%")  # no wildcard matching


def test_resolve_keep_winner_loser_or_value_is_a_local_write(store, task):
    state = SyncState(store)
    state.apply(
        p.ServerTx(
            seq=1,
            changes=[],
            conflicts=[
                conflict("w", task.id, "title", "base", "lost title"),
                conflict("l", task.id, "priority", "medium", "high"),
                conflict("v", task.id, "metadata", "{}", '{"a":1}'),
            ],
        )
    )
    before = store.last_seq()
    resolve_conflict(store, "w", keep="winner")
    resolve_conflict(store, "l", keep="loser")
    resolve_conflict(store, "v", value={"agreed": True})
    got = store.tasks.get(task.id)
    assert (got.title, got.priority, got.metadata) == ("base", "high", {"agreed": True})
    assert store.last_seq() == before + 3  # three writes in the change log: they sync
    assert list_conflicts(store) == []
    assert [c.resolution for c in list_conflicts(store, include_resolved=True)] and state.unreported_resolutions() == ["w", "l", "v"]
    state.reported(["w", "l"])
    assert state.unreported_resolutions() == ["v"]
    with pytest.raises(ValidationError):
        resolve_conflict(store, "w", keep="loser")  # already resolved


def test_resolve_refuses_unclear_requests_and_bad_values(store, task):
    SyncState(store).apply(p.ServerTx(seq=1, changes=[], conflicts=[conflict("c", task.id, "status", "pending", "completed")]))
    with pytest.raises(ValidationError):
        resolve_conflict(store, "c")
    with pytest.raises(ValidationError):
        resolve_conflict(store, "c", keep="both")
    with pytest.raises(ValidationError):
        resolve_conflict(store, "c", keep="winner", value="x")
    with pytest.raises(ValidationError):
        resolve_conflict(store, "c", value="not a status")
    assert [c.id for c in list_conflicts(store)] == ["c"]  # still open: nothing was written


def test_delete_conflicts(store, task):
    other = store.tasks.create("other")
    SyncState(store).apply(
        p.ServerTx(
            seq=1,
            changes=[],
            conflicts=[conflict("keep-delete", other.id, DELETED, 1, 0), conflict("keep-edit", task.id, DELETED, 1, 0)],
        )
    )
    resolve_conflict(store, "keep-delete", keep="winner")
    assert store.tasks.find(other.id) is None
    store.tasks.delete(task.id)
    with pytest.raises(ValidationError):
        resolve_conflict(store, "keep-edit", keep="loser")  # the row's values went with the delete


def test_the_last_chunk_keeps_the_session_cursor_even_when_it_moves_back(store):
    """The last chunk marks its shape live and keeps the cursor the session
    decided, in the chunk's transaction: a cursor older than the one kept
    (shapes' snapshots consistent with different positions) replaces it, so a
    connection cut before the log caught up resumes from there."""
    from syncstore.core.client_session import SnapshotChunk

    state = SyncState(store)
    shapes = [p.Shape("tasks"), p.Shape("task_messages")]
    subs = state.subscriptions(shapes)
    assert [sub.snapshot for sub in subs] == [True, True] and state.cursor == 0
    first, second = (sub.id for sub in subs)
    state.apply_snapshot(SnapshotChunk(first, [], 8, False, "0:a", cursor=99))
    assert state.cursor == 0  # a chunk that is not the last leaves the cursor alone
    state.apply_snapshot(SnapshotChunk(first, [], 8, True, "", cursor=8))
    assert state.cursor == 8
    state.up_to_date(9)
    state.apply_snapshot(SnapshotChunk(second, [], 3, True, "", cursor=3))
    assert state.cursor == 3
    assert [sub.snapshot for sub in state.subscriptions(shapes)] == [False]
