"""A locked, corrupt or foreign file gives one clear syncstore error, never a traceback."""

from __future__ import annotations

import os
import sqlite3

import apsw
import pytest
from click.testing import CliRunner

import syncstore
from syncstore.cli.main import cli
from syncstore.errors import NotAReplicaError, ReplicaError, ReplicaLockedError

FAST = 50  # ms: how long to wait for a lock in these tests


def test_a_writer_holding_the_lock_too_long_gives_replica_locked(replica_path):
    syncstore.open(replica_path).close()
    other = apsw.Connection(replica_path)
    other.execute("begin immediate")  # another process in the middle of a long write
    try:
        with syncstore.open(replica_path, busy_timeout_ms=FAST) as store:
            assert store.count("tasks") == 0  # reading is fine: WAL readers never wait
            with pytest.raises(ReplicaLockedError, match="locked by another process") as caught:
                store.tasks.create("waits, then gives up")
            assert caught.value.retryable
        other.execute("rollback")
        with syncstore.open(replica_path, busy_timeout_ms=FAST) as store:  # and works once it is free
            store.tasks.create("now")
            assert store.count("tasks") == 1
    finally:
        other.close()


def test_a_new_file_locked_by_another_writer_gives_replica_locked(replica_path):
    # apsw for the lock holder too: POSIX locks do not conflict within one process,
    # so only connections of the same SQLite library see each other's locks.
    other = apsw.Connection(replica_path)
    other.execute("create table t (x); drop table t")
    other.execute("begin exclusive")  # rollback-journal mode: nobody may even read
    try:
        with pytest.raises(ReplicaLockedError):
            syncstore.open(replica_path, busy_timeout_ms=FAST)
    finally:
        other.close()


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a database\n" * 50, os.urandom(8192), b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["text", "random", "bad-header"],
)
def test_a_file_that_is_not_sqlite_gives_not_a_replica(replica_path, content):
    with open(replica_path, "wb") as f:
        f.write(content)
    with pytest.raises(NotAReplicaError, match="not a SQLite database"):
        syncstore.open(replica_path)
    with open(replica_path, "rb") as f:
        assert f.read() == content  # left exactly as it was


def test_a_replica_with_corrupt_pages_gives_a_replica_error(replica_path):
    with syncstore.open(replica_path) as store:
        store.insert_many("tasks", [{"title": f"task {n}", "description": "x" * 500} for n in range(300)])
    size = os.path.getsize(replica_path)
    with open(replica_path, "r+b") as f:  # keep the header page, scribble over the rest
        f.seek(4096)
        f.write(os.urandom(size - 4096))
    with pytest.raises(ReplicaError):
        with syncstore.open(replica_path) as store:
            store.rows("tasks")
            store.tasks.create("on a corrupt file")


def test_another_programs_sqlite_file_gives_not_a_replica_and_is_left_alone(tmp_path):
    path = str(tmp_path / "notes.db")
    conn = sqlite3.connect(path)
    conn.execute("create table notes (id integer primary key, body text)")
    conn.execute("insert into notes (body) values ('mine')")
    conn.commit()
    conn.close()
    with open(path, "rb") as f:
        before = f.read()
    with pytest.raises(NotAReplicaError, match="not a syncstore replica.*notes"):
        syncstore.open(path)
    with pytest.raises(NotAReplicaError):
        syncstore.open(path, readonly=True)
    with open(path, "rb") as f:
        assert f.read() == before  # not even switched to WAL
    assert not os.path.exists(path + "-wal")


def test_a_missing_folder_gives_a_replica_error(tmp_path):
    with pytest.raises(ReplicaError, match="cannot open"):
        syncstore.open(str(tmp_path / "no" / "such" / "folder" / "replica.db"))


def test_a_directory_gives_a_replica_error(tmp_path):
    with pytest.raises(ReplicaError):
        syncstore.open(str(tmp_path))


def test_readonly_open_of_a_missing_or_empty_file_is_refused(tmp_path):
    with pytest.raises(ReplicaError):
        syncstore.open(str(tmp_path / "missing.db"), readonly=True)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(NotAReplicaError, match="empty"):
        syncstore.open(str(empty), readonly=True)


def test_writing_to_a_readonly_replica_is_refused(replica_path):
    syncstore.open(replica_path).close()
    with syncstore.open(replica_path, readonly=True) as store:
        with pytest.raises(ReplicaError, match="read-only"):
            store.tasks.create("nope")
        assert store.count("tasks") == 0


@pytest.mark.parametrize("make", ["text", "foreign", "locked"])
def test_the_cli_prints_one_line_and_exits_1(tmp_path, make):
    path = str(tmp_path / "bad.db")
    holder = None
    if make == "text":
        with open(path, "w") as f:
            f.write("hello\n" * 100)
    elif make == "foreign":
        conn = sqlite3.connect(path)
        conn.execute("create table notes (x)")
        conn.commit()
        conn.close()
    else:
        syncstore.open(path).close()
        holder = apsw.Connection(path)
        holder.execute("begin immediate")
    try:
        env = {"SYNCSTORE_DB": path, "SYNCSTORE_BUSY_TIMEOUT_MS": str(FAST)}
        command = ["tasks", "add", "x"] if make == "locked" else ["status"]
        result = CliRunner().invoke(cli, command, env=env)
    finally:
        if holder is not None:
            holder.close()
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped error


def test_a_corrupt_page_met_by_a_read_is_a_replica_error(replica_path):
    with syncstore.open(replica_path) as store:
        store.insert_many("tasks", [{"title": f"task {n}", "description": "x" * 500} for n in range(300)])
        pages = [page for (page,) in store.connection.execute("select pageno from dbstat where name = 'tasks' order by pageno")]
    with open(replica_path, "r+b") as f:  # spoil some of the table's pages, not the schema's
        f.seek((pages[len(pages) // 2] - 1) * 4096)
        f.write(os.urandom(4096 * 5))
    with syncstore.open(replica_path) as store:  # opening reads only the schema and bookkeeping
        with pytest.raises(NotAReplicaError, match="corrupt"):
            store.rows("tasks")
        with pytest.raises(ReplicaError):
            store.query("select count(*) from tasks where description like '%y%'")


def test_bad_sql_through_query_is_a_syncstore_error(store):
    with pytest.raises(ReplicaError, match="syntax error"):
        store.query("selec * from tasks")
