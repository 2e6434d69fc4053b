"""The bulk writer leaves a replica exactly as Replica.insert_many would."""

from __future__ import annotations

import syncstore
from syncstore.core import hlc
from syncstore.legacy import bulk
from syncstore.legacy.mapping import map_task

from .exports import make_task

STAMPS = (hlc.from_ms(1_752_746_400_000), hlc.from_ms(1_752_746_500_000))


def _rows():
    tasks = [map_task(make_task(title=f"t{i}"), now_ms=hlc.wall_ms()) for i in range(2)]
    return tasks


def _state(store):
    tasks = store.query("select id, title, status, metadata, _hlc, _clocks from tasks order by id")
    messages = store.query("select id, task_id, position, content, data, created_at, _hlc, _clocks from task_messages order by id")
    log = [(c.seq, c.tx, c.table, c.id, c.hlc, c.values, c.seen) for c in store.changes()]
    return tasks, messages, log, store.last_seq()


def test_bulk_rows_equal_insert_many_rows(tmp_path):
    tasks = _rows()
    heard = {}
    with syncstore.open(str(tmp_path / "a.db")) as by_api, syncstore.open(str(tmp_path / "b.db")) as by_bulk:
        for name, store in (("api", by_api), ("bulk", by_bulk)):
            heard[name] = []
            store.subscribe(None, lambda changes, name=name: heard[name].extend((c.table, c.id, c.op, c.columns) for c in changes))
        with by_api.transaction():
            for task, stamp in zip(tasks, STAMPS):
                by_api.insert("tasks", task.row, hlc=stamp)
                by_api.insert_many("task_messages", task.messages, hlc=stamp)
        with by_bulk.transaction():
            for task, stamp in zip(tasks, STAMPS):
                bulk.insert_rows(by_bulk, "tasks", [task.row], [stamp])
                bulk.insert_rows(by_bulk, "task_messages", task.messages, [stamp] * len(task.messages))
        assert _state(by_bulk) == _state(by_api)
        assert heard["bulk"] == heard["api"]
        # Later writes on either replica continue from the same counters.
        for store in (by_api, by_bulk):
            store.tasks.create("after", id="01a2b3c4-0000-7000-8000-000000000001")
        assert [(c.seq, c.tx) for c in by_bulk.changes()[-1:]] == [(c.seq, c.tx) for c in by_api.changes()[-1:]]


def test_bulk_does_not_change_the_rows_it_is_given(store):
    (task, _) = _rows()
    before = [dict(m) for m in task.messages]
    with store.transaction():
        bulk.insert_rows(store, "tasks", [task.row], [STAMPS[0]])
        bulk.insert_rows(store, "task_messages", task.messages, [STAMPS[0]] * len(task.messages))
    assert task.messages == before


def test_bulk_refuses_an_existing_id_and_the_transaction_rolls_back(store):
    import pytest

    (task, _) = _rows()
    with pytest.raises(syncstore.ValidationError, match="already exists"):
        with store.transaction():
            bulk.insert_rows(store, "tasks", [task.row], [STAMPS[0]])
            bulk.insert_rows(store, "tasks", [task.row], [STAMPS[0]])
    assert store.count("tasks") == 0 and store.changes() == []


def test_bulk_refuses_a_row_without_every_column_or_with_more(store):
    import pytest

    (task, _) = _rows()
    missing = {k: v for k, v in task.row.items() if k != "title"}
    more = {**task.row, "not_a_column": 1}
    for row in (missing, more):
        with pytest.raises(syncstore.ValidationError, match="every column"):
            with store.transaction():
                bulk.insert_rows(store, "tasks", [row], [STAMPS[0]])
    assert store.count("tasks") == 0 and store.changes() == []
