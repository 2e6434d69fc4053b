"""The replica's API for modules built on it: stamps per row, checked rows,
transactions seen from outside, forwarding notifications, close callbacks,
updates that leave ``updated_at`` alone."""

from __future__ import annotations

import logging

import pytest

import syncstore
from syncstore import schema
from syncstore.core import hlc
from syncstore.errors import ClockDriftError, ReplicaError, ValidationError

ID = "01a215e4-e4c7-7804-a2c7-{:012x}"
NOW = "2025-07-17T10:00:00.000000Z"


def task(i: int, **values) -> dict:
    return {"id": ID.format(i), "title": f"t{i}", "created_at": NOW, "updated_at": NOW, **values}


def complete(i: int) -> dict:
    """A tasks row as the checker returns it: every column, canonical, table order."""
    return schema.validate_row(schema.table("tasks"), task(i), insert=True)


def state(store) -> tuple:
    rows = store.query("select *, _clocks from tasks order by id")
    log = store.query("select seq, tx, tbl, pk, cols, seen from _ss_changes order by seq")
    return [{k: v for k, v in r.items() if k not in ("_hlc", "_site")} for r in rows], log


def stamps_of(store) -> list[int]:
    return [r["hlc"] for r in store.query("select hlc from _ss_changes order by seq")]


# --- insert_many(hlcs=...) -------------------------------------------------------


def test_each_row_takes_its_own_given_stamp(store):
    given = [hlc.from_ms(1_752_746_400_000 + i) for i in (5, 1, 3)]
    ids = store.insert_many("tasks", [task(i) for i in range(3)], hlcs=given)
    assert ids == [ID.format(i) for i in range(3)]
    assert stamps_of(store) == given
    assert [r["_hlc"] for r in store.query("select _hlc from tasks order by id")] == given
    later = store.tasks.create("later")
    assert store.changes()[-1].id == later.id and stamps_of(store)[-1] > max(given)


def test_the_counters_survive_a_reopen_after_stamps_older_than_the_last(replica_path):
    with syncstore.open(replica_path) as store:
        store.insert_many("tasks", [task(i) for i in range(2)], hlcs=[hlc.from_ms(1_752_746_400_000 + i) for i in (9, 2)])
        newest = store.clock.last
    with syncstore.open(replica_path) as again:
        again.tasks.create("after")
        assert stamps_of(again)[-1] > newest and [c.seq for c in again.changes()] == [1, 2, 3]


@pytest.mark.parametrize(
    "given, problem",
    [
        ([hlc.from_ms(1_752_746_400_000)], "one stamp per row"),
        ([hlc.from_ms(1_752_746_400_000), "1"], "positive 64-bit integer"),
        ([hlc.from_ms(1_752_746_400_000), 0], "positive 64-bit integer"),
        ([hlc.from_ms(1_752_746_400_000), True], "positive 64-bit integer"),
    ],
)
def test_bad_stamps_write_nothing(store, given, problem):
    with pytest.raises(ValidationError, match=problem):
        store.insert_many("tasks", [task(0), task(1)], hlcs=given)
    assert store.count("tasks") == 0 and store.changes() == []


def test_a_stamp_from_the_future_is_refused(store):
    ahead = hlc.from_ms(hlc.wall_ms() + 3_600_000)
    with pytest.raises(ClockDriftError):
        store.insert_many("tasks", [task(0), task(1)], hlcs=[hlc.from_ms(1_752_746_400_000), ahead])
    assert store.count("tasks") == 0


def test_hlc_and_hlcs_together_are_refused(store):
    stamp = hlc.from_ms(1_752_746_400_000)
    with pytest.raises(ValidationError, match="not both"):
        store.insert_many("tasks", [task(0)], hlc=stamp, hlcs=[stamp])


# --- insert_many(checked=True) ---------------------------------------------------


@pytest.mark.parametrize("form", ["mapping", "tuple"])
def test_checked_rows_are_written_as_the_checked_path_writes_them(tmp_path, form):
    rows = [complete(i) for i in range(4)]
    given = [dict(r) for r in rows]
    heard = {"checked": [], "generic": []}
    with syncstore.open(str(tmp_path / "c.db")) as checked, syncstore.open(str(tmp_path / "g.db")) as generic:
        checked.subscribe("tasks", heard["checked"].extend)
        generic.subscribe("tasks", heard["generic"].extend)
        stamps = [hlc.from_ms(1_752_746_400_000 + i) for i in range(4)]
        names = schema.table("tasks").column_names
        values = rows if form == "mapping" else [tuple(r[n] for n in names) for r in rows]
        assert checked.insert_many("tasks", values, hlcs=stamps, checked=True) == [r["id"] for r in rows]
        generic.insert_many("tasks", [task(i) for i in range(4)], hlcs=stamps)
        assert state(checked) == state(generic)  # rows, clocks and log entries byte for byte
        assert heard["checked"] == heard["generic"]
        assert stamps_of(checked) == stamps_of(generic) == stamps
    assert rows == given  # the caller's mappings are not changed


@pytest.mark.parametrize(
    "row",
    [
        {k: v for k, v in complete(0).items() if k != "title"},  # a column missing
        {**complete(0), "colour": "red"},  # a column too many
        {k: v for k, v in complete(0).items() if k != "title"} | {"colour": "red"},  # same count, wrong names
        tuple(complete(0).values())[:-1],
        ["not", "a", "row"],
    ],
)
def test_a_checked_row_of_the_wrong_shape_is_refused(store, row):
    with pytest.raises(ValidationError, match="checked row"):
        store.insert_many("tasks", [complete(1), row], checked=True)
    assert store.count("tasks") == 0 and store.changes() == []


def test_a_checked_row_with_an_existing_id_rolls_back_its_batch(store):
    store.insert("tasks", task(1))
    with pytest.raises(ValidationError, match="already exists"):
        store.insert_many("tasks", [complete(2), complete(1)], checked=True)
    assert store.count("tasks") == 1 and len(store.changes()) == 1


def test_a_checked_row_brings_a_deleted_row_back(store):
    store.insert("tasks", task(1))
    store.delete("tasks", ID.format(1))
    assert store.tombstone("tasks", ID.format(1)) is not None
    store.insert_many("tasks", [complete(1)], checked=True)
    assert store.get("tasks", ID.format(1))["title"] == "t1"
    assert store.tombstone("tasks", ID.format(1)) is None


# --- transactions seen from outside ----------------------------------------------


def test_in_transaction_follows_the_outermost_level(store):
    assert not store.in_transaction
    with store.transaction():
        assert store.in_transaction
        with store.transaction():
            assert store.in_transaction
        assert store.in_transaction
    assert not store.in_transaction
    with pytest.raises(RuntimeError):
        with store.transaction():
            raise RuntimeError
    assert not store.in_transaction


def test_the_busy_timeout_is_kept_on_the_replica(replica_path):
    with syncstore.open(replica_path, busy_timeout_ms=1234) as store:
        assert store.busy_timeout_ms == 1234
        assert store.connection.execute("pragma busy_timeout").fetchone()[0] == 1234


# --- notify: a second connection's commits heard by the first's listeners --------


def test_a_writer_on_its_own_connection_forwards_its_commits(replica_path):
    with syncstore.open(replica_path) as app, syncstore.open(replica_path) as writer:
        heard, tasks_only = [], []
        app.subscribe(None, heard.extend)
        app.subscribe("tasks", tasks_only.extend)
        writer.subscribe(None, app.notify)
        task_id = writer.insert("tasks", task(1))
        writer.insert("environments", {"name": "ci"})
        assert [(c.table, c.op, c.origin) for c in heard] == [("tasks", "insert", "local"), ("environments", "insert", "local")]
        assert [c.id for c in tasks_only] == [task_id]


def test_a_failing_listener_does_not_stop_the_others(store, caplog):
    heard = []

    def broken(changes):
        raise RuntimeError("listener bug")

    store.subscribe(None, broken)
    store.subscribe(None, heard.extend)
    with caplog.at_level(logging.ERROR, logger="syncstore.replica"):
        store.notify([syncstore.Change("tasks", ID.format(1), "insert", ("id",), "remote")])
    assert len(heard) == 1 and "listener bug" in caplog.text


# --- on_close --------------------------------------------------------------------


def test_close_callbacks_run_newest_first_while_the_file_is_open(replica_path):
    store = syncstore.open(replica_path)
    order = []
    store.on_close(lambda: order.append(("first", store.count("tasks"))))
    store.on_close(lambda: order.append(("second", store.insert("tasks", task(1)) and store.count("tasks"))))
    store.close()
    assert order == [("second", 1), ("first", 1)]
    with syncstore.open(replica_path) as again:
        assert again.count("tasks") == 1  # what a callback wrote was committed before the close
    store.close()  # a second close runs nothing again
    assert len(order) == 2


def test_a_failing_close_callback_is_logged_and_the_close_goes_on(replica_path, caplog):
    store = syncstore.open(replica_path)
    ran = []

    def broken():
        raise RuntimeError("flush failed")

    store.on_close(lambda: ran.append("older"))
    store.on_close(broken)
    with caplog.at_level(logging.ERROR, logger="syncstore.replica"):
        store.close()
    assert ran == ["older"] and "flush failed" in caplog.text
    with pytest.raises(ReplicaError):
        store.count("tasks")  # the connection is closed


def test_a_cancelled_close_callback_does_not_run(replica_path):
    store = syncstore.open(replica_path)
    ran = []
    cancel = store.on_close(lambda: ran.append(1))
    cancel()
    store.close()
    assert ran == []


# --- update(touch=False) ---------------------------------------------------------


def test_an_update_without_touch_leaves_updated_at(store):
    store.insert("tasks", task(1))
    store.update("tasks", ID.format(1), {"status": "in_progress"}, touch=False)
    row = store.get("tasks", ID.format(1))
    assert (row["status"], row["updated_at"]) == ("in_progress", NOW)
    assert store.changes()[-1].values == {"status": "in_progress"}
    store.update("tasks", ID.format(1), {"status": "completed"})
    assert store.get("tasks", ID.format(1))["updated_at"] > NOW
