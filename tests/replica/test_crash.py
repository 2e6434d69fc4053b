"""A process killed with SIGKILL right after a commit loses nothing it committed, and
leaves no part of a transaction it had not committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

import syncstore

CHILD = textwrap.dedent(
    """
    import sys, time
    import syncstore

    path, mode = sys.argv[1], sys.argv[2]
    store = syncstore.open(path)
    if mode == "one":
        task = store.tasks.create("committed just before the kill")
        store.messages.add(task.id, "user", "so was this")
        print(task.id, flush=True)  # the parent kills us as soon as it reads this
        time.sleep(60)
    else:
        # Transactions of exactly ten rows, reported as each commits; the kill
        # lands at some point in the stream, often inside a transaction.
        n = 0
        while True:
            with store.transaction():
                for k in range(10):
                    store.insert("tasks", {"title": f"tx {n} row {k}"})
            print(n, flush=True)
            n += 1
    """
)


def run_child(path: str, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, path, mode], stdout=subprocess.PIPE, text=True)


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_a_commit_survives_kill_9_straight_after_it(replica_path):
    proc = run_child(replica_path, "one")
    task_id = proc.stdout.readline().strip()
    kill(proc)
    with syncstore.open(replica_path) as store:
        assert store.tasks.get(task_id).title == "committed just before the kill"
        assert [m.content for m in store.messages.for_task(task_id)] == ["so was this"]
        entries = store.changes()
        assert [(e.table, e.id) for e in entries][0] == ("tasks", task_id)
        assert len(entries) == 2 and store.last_seq() == 2
        assert store.connection.execute("pragma integrity_check").fetchall() == [("ok",)]
        store.tasks.create("life goes on")  # and the replica takes writes again
        assert store.changes()[-1].seq == 3


def test_a_kill_in_a_stream_of_transactions_keeps_whole_transactions_only(replica_path):
    syncstore.open(replica_path).close()
    proc = run_child(replica_path, "stream")
    reported = [int(proc.stdout.readline()) for _ in range(25)]  # 25 commits seen by us
    kill(proc)
    with syncstore.open(replica_path) as store:
        entries = store.changes()
        per_tx = Counter(e.tx for e in entries)
        assert set(per_tx.values()) == {10}, "a transaction is in the log whole or not at all"
        assert len(per_tx) >= len(reported)  # everything reported committed is there
        assert store.count("tasks") == len(entries)
        titles = {row["title"] for row in store.rows("tasks")}
        for n in reported:
            assert {f"tx {n} row {k}" for k in range(10)} <= titles
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert store.connection.execute("pragma integrity_check").fetchall() == [("ok",)]
