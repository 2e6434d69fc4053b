"""The replica is a plain SQLite file: other tools open it read-only and read the rows."""

from __future__ import annotations

import json
import sqlite3

import pytest
import sqlite_utils

import syncstore
from syncstore import schema


@pytest.fixture
def filled(replica_path):
    with syncstore.open(replica_path) as store:
        task = store.tasks.create("Summarise the logs", repository="octo/app", metadata={"source": "ci", "n": 3})
        store.messages.add(task.id, "user", "focus on failures")
        store.messages.add(task.id, "assistant", "reading")
        done = store.tasks.create("Old one", status="completed")
        store.tasks.delete(done.id)
        store.environments.create("dev", github_repository="octo/app")
        expected = {name: store.rows(name, order_by="id") for name in ("tasks", "task_messages", "environments")}
    return replica_path, task.id, expected


def readonly(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def test_the_stdlib_sqlite3_module_reads_every_synced_table(filled):
    path, _, expected = filled
    conn = readonly(path)
    conn.row_factory = sqlite3.Row
    tables = {row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")}
    assert set(schema.TABLES) <= tables
    for name, rows in expected.items():
        columns = ", ".join(schema.TABLES[name].column_names)
        got = [dict(row) for row in conn.execute(f"select {columns} from {name} order by id")]
        assert got == rows, name
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("delete from tasks")
    conn.close()


def test_stored_values_are_plain_sqlite_values(filled):
    path, task_id, _ = filled
    conn = readonly(path)
    title, metadata, created_at, archived = conn.execute(
        "select title, metadata, created_at, is_archived from tasks where id = ?", (task_id,)
    ).fetchone()
    assert title == "Summarise the logs"
    assert json.loads(metadata) == {"source": "ci", "n": 3}
    # SQLite's own JSON and date functions work on them.
    assert conn.execute("select json_extract(metadata, '$.source') from tasks where id = ?", (task_id,)).fetchone() == ("ci",)
    assert conn.execute("select julianday(?) is not null", (created_at,)).fetchone() == (1,)
    assert archived == 0
    positions = [r[0] for r in conn.execute("select position from task_messages where task_id = ? order by position", (task_id,))]
    assert positions == [0, 1]
    conn.close()


def test_the_change_log_and_tombstones_are_readable_too(filled):
    path, _, _ = filled
    conn = readonly(path)
    (logged,) = conn.execute("select count(*) from _ss_changes").fetchone()
    assert logged == 6  # 2 tasks, 2 messages, 1 delete, 1 environment
    (stones,) = conn.execute("select count(*) from _ss_tombstones where tbl = 'tasks'").fetchone()
    assert stones == 1
    conn.close()


def test_sqlite_utils_reads_the_replica(filled):
    path, task_id, expected = filled
    db = sqlite_utils.Database(readonly(path))
    assert set(schema.TABLES) <= set(db.table_names())
    assert db["tasks"].count == 1
    (row,) = db["tasks"].rows_where("id = ?", [task_id])
    assert row["title"] == "Summarise the logs" and row["repository"] == "octo/app"
    assert [r["content"] for r in db["task_messages"].rows_where(order_by="position")] == ["focus on failures", "reading"]
    assert {c.name for c in db["tasks"].columns} >= set(schema.TABLES["tasks"].column_names)


def test_another_tool_can_read_while_the_store_writes(replica_path):
    with syncstore.open(replica_path) as store:
        store.tasks.create("first")
        reader = readonly(replica_path)
        with store.transaction():
            store.tasks.create("not committed yet")
            # WAL: the reader sees the last commit, never half a transaction, and is not blocked.
            assert reader.execute("select count(*) from tasks").fetchone() == (1,)
        assert reader.execute("select count(*) from tasks").fetchone() == (2,)
        reader.close()
