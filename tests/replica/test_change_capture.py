"""Change capture: every committed local write is in the change log, in the same
transaction; nothing else is."""

from __future__ import annotations

import pytest

import syncstore
from syncstore.core import hlc as hlc_mod
from syncstore.errors import ClockDriftError, NotFoundError, ValidationError
from syncstore.replica.store import DELETED


class Boom(Exception):
    pass


def log(store):
    return store.changes()


def snapshot(store):
    """Everything a write may touch, to compare before and after a failed one."""
    conn = store.connection
    return (
        list(conn.execute("select * from tasks order by id")),
        list(conn.execute("select * from task_messages order by id")),
        list(conn.execute("select * from _ss_changes order by seq")),
        list(conn.execute("select * from _ss_tombstones order by tbl, pk")),
        store.last_seq(),
    )


def test_insert_logs_every_column_with_the_row_clock(store):
    row_id = store.insert("tasks", {"title": "write docs"})
    (entry,) = log(store)
    row = store.get("tasks", row_id)
    assert (entry.seq, entry.table, entry.id, entry.seen) == (1, "tasks", row_id, None)
    assert entry.values == {**row, DELETED: 0}
    stored_hlc, stored_site = store.connection.execute("select _hlc, _site from tasks where id = ?", (row_id,)).fetchone()
    assert entry.hlc == stored_hlc and stored_site == store.site_id


def test_update_logs_the_written_columns_and_the_versions_they_replaced(store):
    row_id = store.insert("tasks", {"title": "a"})
    insert_hlc = log(store)[0].hlc
    store.update("tasks", row_id, {"status": "in_progress"})
    first = log(store)[-1]
    assert set(first.values) == {"status", "updated_at"}
    assert first.values["status"] == "in_progress"
    assert first.seen == {"status": (insert_hlc, store.site_id), "updated_at": (insert_hlc, store.site_id)}
    assert first.hlc > insert_hlc

    store.update("tasks", row_id, {"status": "completed", "updated_at": "2030-01-01T00:00:00Z"})
    second = log(store)[-1]
    assert second.values == {"status": "completed", "updated_at": "2030-01-01T00:00:00.000000Z"}
    assert second.seen == {"status": (first.hlc, store.site_id), "updated_at": (first.hlc, store.site_id)}


def test_per_column_clocks_follow_the_writes(store):
    row_id = store.insert("tasks", {"title": "a"})
    insert_hlc = log(store)[0].hlc
    store.update("tasks", row_id, {"priority": "high"})
    update_hlc = log(store)[-1].hlc
    cells = store.cells("tasks", row_id)
    assert cells["priority"].hlc == update_hlc and cells["priority"].value == "high"
    assert cells["updated_at"].hlc == update_hlc
    assert cells["title"].hlc == insert_hlc and cells[DELETED].hlc == insert_hlc
    assert cells[DELETED].value == 0
    assert "id" not in cells


def test_delete_logs_a_tombstone_with_everything_it_saw(store):
    row_id = store.insert("tasks", {"title": "a"})
    store.update("tasks", row_id, {"priority": "low"})
    before = store.cells("tasks", row_id)
    store.delete("tasks", row_id)
    entry = log(store)[-1]
    assert entry.values == {DELETED: 1}
    assert entry.seen == {name: (cell.hlc, cell.site) for name, cell in before.items()}
    assert store.get("tasks", row_id) is None
    assert store.tombstone("tasks", row_id) == (entry.hlc, store.site_id)


def test_insert_many_logs_one_entry_per_row_in_one_transaction(store):
    ids = store.insert_many("tasks", [{"title": f"t{n}"} for n in range(5)])
    entries = log(store)
    assert [e.id for e in entries] == ids
    assert {e.tx for e in entries} == {entries[0].tx}
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert [e.hlc for e in entries] == sorted({e.hlc for e in entries})


def test_sequence_numbers_are_contiguous_and_stamps_increase(store):
    task = store.tasks.create("a")
    for n in range(20):
        if n % 3 == 0:
            store.messages.add(task.id, "user", f"m{n}")
        else:
            store.tasks.update(task.id, description=f"d{n}")
    entries = log(store)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    stamps = [e.hlc for e in entries]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert store.last_seq() == len(entries)


def test_writes_in_one_transaction_share_a_tx_number(store):
    with store.transaction():
        task = store.tasks.create("a")
        store.messages.add(task.id, "user", "hi")
        store.tasks.update(task.id, status="in_progress")
    store.tasks.update(task.id, status="completed")
    entries = log(store)
    assert [e.tx for e in entries] == [1, 1, 1, 2]


def test_a_transaction_that_logs_nothing_uses_no_tx_number(store):
    store.tasks.create("a")
    store.meta_set("note", "local bookkeeping is not a synced write")
    with store.transaction():
        pass
    store.tasks.create("b")
    assert [e.tx for e in log(store)] == [1, 2]


def test_a_rolled_back_transaction_leaves_nothing(store):
    task = store.tasks.create("kept")
    before = snapshot(store)
    with pytest.raises(Boom):
        with store.transaction():
            store.tasks.update(task.id, title="lost")
            store.messages.add(task.id, "user", "lost")
            store.insert("tasks", {"title": "lost too"})
            store.tasks.delete(task.id)
            raise Boom
    assert snapshot(store) == before
    store.tasks.create("next")
    assert [e.seq for e in log(store)] == [1, 2]  # no gap where the rolled-back entries were


def test_a_savepoint_rolls_back_alone(store):
    with store.transaction():
        kept = store.tasks.create("kept")
        with pytest.raises(Boom):
            with store.transaction():
                store.tasks.create("lost")
                store.tasks.update(kept.id, title="lost title")
                raise Boom
        store.tasks.update(kept.id, status="in_progress")
    entries = log(store)
    assert [(e.seq, e.id) for e in entries] == [(1, kept.id), (2, kept.id)]
    assert set(entries[1].values) == {"status", "updated_at"}
    assert store.tasks.get(kept.id).title == "kept"
    assert store.tasks.count() == 1


def test_a_caught_validation_error_inside_a_transaction_writes_nothing_of_it(store):
    with store.transaction():
        store.tasks.create("kept")
        with pytest.raises(ValidationError):
            store.insert_many("tasks", [{"title": "fine"}, {"title": "bad", "status": "not-a-status"}])
    assert [row["title"] for row in store.rows("tasks")] == ["kept"]
    assert len(log(store)) == 1


def test_a_duplicate_id_is_named_and_nothing_of_the_batch_is_written(store):
    existing = store.tasks.create("first")
    before = snapshot(store)
    rows = [{"title": "new 1", "id": "00000000-0000-7000-8000-000000000001"},
            {"title": "clash", "id": existing.id},
            {"title": "new 2", "id": "00000000-0000-7000-8000-000000000002"}]
    with pytest.raises(ValidationError, match=f"a row with id '{existing.id}' already exists") as caught:
        store.insert_many("tasks", rows)
    assert caught.value.field == "id"
    assert snapshot(store) == before


def test_a_duplicate_within_one_batch_is_named(store):
    same = "00000000-0000-7000-8000-0000000000aa"
    with pytest.raises(ValidationError, match=same):
        store.insert_many("tasks", [{"title": "a", "id": same}, {"title": "b", "id": same}])
    assert store.count("tasks") == 0 and log(store) == []


def test_an_invalid_row_is_refused_before_anything_is_written(store):
    before = snapshot(store)
    with pytest.raises(ValidationError) as caught:
        store.insert_many("tasks", [{"title": "ok"}, {"title": "bad", "priority": "sky-high"}])
    assert caught.value.field == "priority" and "sky-high" in str(caught.value)
    assert snapshot(store) == before


def test_failed_updates_and_deletes_log_nothing(store):
    task = store.tasks.create("a")
    before = snapshot(store)
    missing = "00000000-0000-7000-8000-00000000ffff"
    with pytest.raises(NotFoundError):
        store.update("tasks", missing, {"title": "x"})
    with pytest.raises(NotFoundError):
        store.delete("tasks", missing)
    with pytest.raises(ValidationError, match="unknown column"):
        store.update("tasks", task.id, {"colour": "red"})
    with pytest.raises(ValidationError, match="append-only"):
        store.update("task_messages", task.id, {"content": "x"})
    with pytest.raises(ValidationError, match="append-only"):
        store.delete("task_messages", task.id)
    assert snapshot(store) == before


def test_the_callers_mapping_is_not_changed(store):
    values = {"title": "a"}
    store.insert("tasks", values)
    changes = {"status": "completed"}
    store.update("tasks", store.rows("tasks")[0]["id"], changes)
    assert values == {"title": "a"} and changes == {"status": "completed"}


def test_a_given_stamp_is_logged_and_later_writes_sort_after_it(store):
    stamp = hlc_mod.from_ms(hlc_mod.wall_ms() + 5_000)  # a little ahead, within the drift cap
    row_id = store.insert("tasks", {"title": "imported"}, hlc=stamp)
    assert log(store)[0].hlc == stamp
    store.update("tasks", row_id, {"title": "edited"})
    assert log(store)[-1].hlc > stamp


def test_an_old_given_stamp_does_not_move_the_clock_back(store):
    ahead = hlc_mod.from_ms(hlc_mod.wall_ms() + 20_000)  # ahead of the wall clock, within the cap
    store.insert("tasks", {"title": "from a fast machine"}, hlc=ahead)
    store.insert("tasks", {"title": "from 1970"}, hlc=hlc_mod.from_ms(1_000_000))
    with syncstore.open(store.path) as again:  # a fresh connection must still know of `ahead`
        again.tasks.create("later")
        assert again.changes()[-1].hlc > ahead


@pytest.mark.parametrize("bad", [-1, 0, 2**63, "123", 1.5])
def test_a_malformed_given_stamp_is_refused(store, bad):
    with pytest.raises(ValidationError, match="hlc"):
        store.insert("tasks", {"title": "x"}, hlc=bad)
    assert store.count("tasks") == 0


def test_a_far_future_given_stamp_is_refused(store):
    with pytest.raises(ClockDriftError):
        store.insert("tasks", {"title": "x"}, hlc=hlc_mod.from_ms(hlc_mod.wall_ms() + 3_600_000))
    assert store.count("tasks") == 0


def test_counters_continue_after_reopening(replica_path):
    with syncstore.open(replica_path) as first:
        first.tasks.create("a")
        first.tasks.create("b")
        last = first.changes()[-1]
    with syncstore.open(replica_path) as second:
        second.tasks.create("c")
        entry = second.changes()[-1]
    assert entry.seq == last.seq + 1 and entry.tx == last.tx + 1 and entry.hlc > last.hlc


def test_deleting_pushed_log_entries_never_lets_a_number_be_used_again(store):
    for n in range(3):
        store.tasks.create(f"t{n}")
    last = log(store)[-1]
    store.connection.execute("delete from _ss_changes")  # a sync client compacting after an ack
    assert store.last_seq() == last.seq
    store.tasks.create("after compaction")
    (entry,) = log(store)
    assert entry.seq == last.seq + 1 and entry.tx > last.tx and entry.hlc > last.hlc
    with syncstore.open(store.path) as other:  # another connection agrees
        other.tasks.create("from another connection")
        assert other.changes()[-1].seq == last.seq + 2


def test_remote_and_local_only_writes_are_not_logged(store):
    store.meta_set("sync.cursor", 42)
    assert store.meta_get("sync.cursor") == 42
    assert log(store) == [] and store.last_seq() == 0


def test_reads_see_writes_of_an_open_transaction(store):
    with store.transaction():
        task = store.tasks.create("visible inside")
        assert store.tasks.get(task.id).title == "visible inside"
        assert store.count("tasks") == 1


def test_an_update_with_an_older_stamp_keeps_newer_columns(store):
    from syncstore.core import hlc as hlc_mod

    row_id = store.insert("tasks", {"title": "first"}, hlc=hlc_mod.from_ms(2_000))
    store.update("tasks", row_id, {"title": "newer"}, hlc=hlc_mod.from_ms(5_000))
    logged = len(store.changes())
    store.update("tasks", row_id, {"title": "older", "description": "d"}, hlc=hlc_mod.from_ms(3_000))
    row = store.get("tasks", row_id)
    assert row["title"] == "newer"  # the newer version wins, as the merge rule says
    assert row["description"] == "d"  # the column that was older takes the write
    assert store.cells("tasks", row_id)["title"].hlc == hlc_mod.from_ms(5_000)
    assert "title" not in store.changes()[-1].values
    assert len(store.changes()) == logged + 1


def test_reads_from_another_thread_wait_for_an_open_transaction(store):
    import threading

    results = []
    with store.transaction():
        store.insert("tasks", {"title": "inside"})
        reader = threading.Thread(target=lambda: results.append(store.count("tasks")))
        reader.start()
        reader.join(0.2)
        assert reader.is_alive()  # waiting for the transaction, not reading half of it
    reader.join(5)
    assert results == [1]
