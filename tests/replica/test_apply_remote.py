"""Writes from other replicas: merged cell by cell with the one merge rule."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

import syncstore
from syncstore.core import hlc as hlc_mod
from syncstore.core.merge import Cell
from syncstore.errors import ValidationError
from syncstore.replica.store import DELETED, RemoteChange

OTHER = b"\x7f" * 16  # another replica's site id
LOW = b"\x00" * 16  # sorts before any random site id of ours... almost surely
HIGH = b"\xff" * 16
ROW = "01a215e4-e4c7-7804-a2c7-551014ae9339"


def stamp(offset_ms: int = 0) -> int:
    return hlc_mod.from_ms(hlc_mod.wall_ms() + offset_ms)


def remote(row_id=ROW, table="tasks", **cells):
    return RemoteChange(table, row_id, cells)


def state(store):
    """Everything the merge decides, for comparing replicas."""
    conn = store.connection
    return (
        [dict(zip(("id", "title", "status", "_hlc", "_site", "_clocks"), r))
         for r in conn.execute("select id, title, status, _hlc, _site, _clocks from tasks order by id")],
        {(t, p): (h, s, c) for t, p, h, s, c in conn.execute("select tbl, pk, hlc, site, cells from _ss_tombstones")},
        {r["id"]: store.cells("tasks", r["id"]) for r in store.rows("tasks")},
    )


def test_a_new_remote_row_is_inserted_with_defaults_for_what_it_does_not_carry(store):
    t = stamp(-1000)
    applied = store.apply_remote([remote(title=Cell("from B", t, OTHER), status=Cell("in_progress", t, OTHER))])
    assert [(c.op, c.id, c.origin) for c in applied] == [("insert", ROW, "remote")]
    row = store.get("tasks", ROW)
    assert row["title"] == "from B" and row["status"] == "in_progress"
    assert row["priority"] == "medium" and row["metadata"] == "{}"  # defaults
    cells = store.cells("tasks", ROW)
    assert cells["title"] == Cell("from B", t, OTHER)
    assert cells["priority"].hlc == 0  # never written: loses to any real write


def test_newer_cells_win_and_older_ones_lose_column_by_column(store):
    task = store.tasks.create("local title", priority="low")
    local = store.cells("tasks", task.id)["title"].hlc
    store.apply_remote([remote(task.id, title=Cell("newer", local + 1, OTHER), priority=Cell("urgent", local - 1, OTHER))])
    row = store.get("tasks", task.id)
    assert row["title"] == "newer"  # greater stamp
    assert row["priority"] == "low"  # the remote write was older
    assert store.cells("tasks", task.id)["title"] == Cell("newer", local + 1, OTHER)


def test_equal_stamps_are_decided_by_site(store):
    t = stamp(-1000)
    store.apply_remote([remote(title=Cell("low site", t, LOW))])
    store.apply_remote([remote(title=Cell("high site", t, HIGH))])
    store.apply_remote([remote(title=Cell("low site again", t, LOW))])
    assert store.get("tasks", ROW)["title"] == "high site"


def test_remote_changes_are_not_logged(store):
    store.apply_remote([remote(title=Cell("x", stamp(-10), OTHER))])
    assert store.changes() == [] and store.last_seq() == 0


def test_applying_the_same_changes_twice_changes_nothing_the_second_time(store):
    batch = [remote(title=Cell("x", stamp(-10), OTHER)), remote(status=Cell("paused", stamp(-5), OTHER))]
    store.apply_remote(batch)
    before = state(store)
    assert store.apply_remote(batch) == []
    assert state(store) == before


def test_the_clock_moves_past_remote_stamps_and_stays_there(replica_path):
    ahead = stamp(30_000)  # a remote clock a little ahead of ours
    with syncstore.open(replica_path) as store:
        store.apply_remote([remote(title=Cell("from the future", ahead, OTHER))])
        store.tasks.update(ROW, title="edited here")
        assert store.changes()[-1].hlc > ahead
        assert store.get("tasks", ROW)["title"] == "edited here"  # our edit is newer, so it wins
    with syncstore.open(replica_path) as again:  # persisted, not just in memory
        again.tasks.create("after reopening")
        assert again.changes()[-1].hlc > ahead


# --- deletes ---------------------------------------------------------------------------


def test_a_newer_remote_delete_removes_the_row(store):
    task = store.tasks.create("doomed")
    t = store.cells("tasks", task.id)["title"].hlc + 1
    applied = store.apply_remote([remote(task.id, **{DELETED: Cell(1, t, OTHER)})])
    assert [(c.op, c.id) for c in applied] == [("delete", task.id)]
    assert store.get("tasks", task.id) is None
    assert store.tombstone("tasks", task.id) == (t, OTHER)


def test_an_older_remote_delete_loses_to_the_live_row(store):
    task = store.tasks.create("survivor")
    t = store.cells("tasks", task.id)[DELETED].hlc - 1
    assert store.apply_remote([remote(task.id, **{DELETED: Cell(1, t, OTHER)})]) == []
    assert store.get("tasks", task.id)["title"] == "survivor"
    assert store.tombstone("tasks", task.id) is None


def test_a_tombstone_is_not_undone_by_an_older_write_arriving_late(store):
    task = store.tasks.create("deleted here")
    store.tasks.delete(task.id)
    stone = store.tombstone("tasks", task.id)
    old = stamp(-60_000)  # written elsewhere a minute before our delete, delivered only now
    late = [remote(task.id, **{DELETED: Cell(0, old, OTHER), "title": Cell("late insert", old, OTHER)})]
    assert store.apply_remote(late) == []
    assert store.get("tasks", task.id) is None
    assert store.tombstone("tasks", task.id) == stone
    assert store.apply_remote([remote(task.id, title=Cell("late update", old + 1, OTHER))]) == []
    assert store.get("tasks", task.id) is None


def test_a_newer_insert_brings_a_deleted_row_back(store):
    task = store.tasks.create("gone")
    store.tasks.delete(task.id)
    newer = store.tombstone("tasks", task.id)[0] + 1
    applied = store.apply_remote([remote(task.id, **{DELETED: Cell(0, newer, OTHER), "title": Cell("back", newer, OTHER)})])
    assert [(c.op, c.id) for c in applied] == [("insert", task.id)]
    row = store.get("tasks", task.id)
    assert row["title"] == "back"
    # Cells the resurrecting write did not carry keep their values from before the delete.
    assert row["created_at"] == task.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert store.tombstone("tasks", task.id) is None


def test_a_local_insert_of_a_deleted_id_brings_it_back_and_syncs(store):
    task = store.tasks.create("first life")
    store.tasks.delete(task.id)
    store.tasks.create("second life", id=task.id)
    assert store.tasks.get(task.id).title == "second life"
    assert store.tombstone("tasks", task.id) is None
    entry = store.changes()[-1]
    assert entry.values[DELETED] == 0 and entry.hlc > store.changes()[-2].hlc


def test_a_write_to_a_deleted_row_is_kept_for_when_it_comes_back(store):
    t = stamp(-10_000)
    store.apply_remote([remote(**{DELETED: Cell(1, t + 10, OTHER)})])  # deleted elsewhere
    store.apply_remote([remote(title=Cell("written after the delete", t + 20, OTHER))])  # by someone who had not seen it
    assert store.get("tasks", ROW) is None
    store.apply_remote([remote(**{DELETED: Cell(0, t + 30, OTHER)})])  # brought back, title not carried
    assert store.get("tasks", ROW)["title"] == "written after the delete"


# --- bad input -------------------------------------------------------------------------


BAD = [
    (remote(table="no_such_table", title=Cell("x", 1, OTHER)), "unknown table"),
    (remote(colour=Cell("red", 1, OTHER)), "unknown column"),
    (remote(status=Cell("on fire", 1, OTHER)), "not one of"),
    (remote(title=Cell(None, 1, OTHER)), None),  # a NULL title is a valid cell value remotely
    (remote("not-a-uuid", title=Cell("x", 1, OTHER)), "UUID"),
    (remote(title=Cell("x", -5, OTHER)), "clock stamp"),
    (remote(title=Cell("x", "12", OTHER)), "clock stamp"),
    (remote(title=Cell("x", 1, b"short")), "16 bytes"),
    (remote(title=Cell("x", 1, "not bytes")), "16 bytes"),
    (remote(**{DELETED: Cell(2, 1, OTHER)}), "0 or 1"),
    (remote(title=("only two", 1)), "value, hlc, site"),
    (RemoteChange("tasks", ROW, ["not", "a", "mapping"]), "mapping"),
    (remote(), "at least one column"),
]


@pytest.mark.parametrize("bad, message", [b for b in BAD if b[1] is not None])
def test_a_bad_remote_change_aborts_the_whole_batch(store, bad, message):
    local = store.tasks.create("untouched")
    before = (state(store), store.clock.last)
    good = remote("01a215e4-e4c7-7804-a2c7-000000000001", title=Cell("good", stamp(5_000), OTHER))
    with pytest.raises(ValidationError, match=message):
        store.apply_remote([good, bad])
    assert (state(store), store.clock.last) == before
    assert store.get("tasks", good.id) is None and store.tasks.get(local.id).title == "untouched"


def test_remote_subscribers_hear_of_remote_changes_after_commit(store):
    heard = []
    store.subscribe("tasks", heard.append)
    store.apply_remote([remote(title=Cell("x", stamp(-10), OTHER))])
    assert [[(c.op, c.origin) for c in batch] for batch in heard] == [[("insert", "remote")]]


# --- order does not matter ----------------------------------------------------------


IDS = [f"01a215e4-e4c7-7804-a2c7-00000000000{n}" for n in range(3)]
SITES = [b"\x01" * 16, b"\x02" * 16, b"\x03" * 16]
CHANGES = st.builds(
    lambda row, cells: RemoteChange("tasks", row, cells),
    st.sampled_from(IDS),
    st.dictionaries(
        st.sampled_from(["title", "status", DELETED]),
        st.tuples(st.integers(0, 3), st.integers(1, 6), st.sampled_from(SITES)),
        min_size=1,
    ),
).map(lambda ch: RemoteChange(ch.table, ch.id, {
    name: Cell(
        (v % 2) if name == DELETED else (["todo", "a", "b", "c"][v] if name == "title" else ["pending", "paused", "failed", "completed"][v]),
        # Stamps from 1970 so that the replica's own clock is never involved.
        hlc, site)
    for name, (v, hlc, site) in ch.cells.items()
}))


@pytest.fixture(scope="module")
def blank_replica(tmp_path_factory):
    """A fresh replica file to copy: opening one runs every migration, too slow per example."""
    path = tmp_path_factory.mktemp("blank") / "blank.db"
    syncstore.open(str(path)).close()
    return path


@given(st.lists(CHANGES, max_size=12), st.randoms(use_true_random=False), st.integers(0, 3))
def test_replicas_that_receive_the_same_changes_in_any_order_agree(blank_replica, tmp_path_factory, changes, rng, split):
    folder = tmp_path_factory.mktemp("order")
    shutil.copy(blank_replica, folder / "a.db")
    shutil.copy(blank_replica, folder / "b.db")
    shuffled = list(changes)
    rng.shuffle(shuffled)
    with syncstore.open(str(folder / "a.db")) as a, syncstore.open(str(folder / "b.db")) as b:
        a.apply_remote(changes)  # all at once, in order
        for n in range(0, len(shuffled), split + 1):  # in other batches, another order, some twice
            b.apply_remote(shuffled[n : n + split + 1])
        b.apply_remote(shuffled[:split])
        assert state(a) == state(b)
        for table, row in state(a)[1]:  # a deleted row's kept cells agree too
            assert a._buried_cells(table, row) == b._buried_cells(table, row)
