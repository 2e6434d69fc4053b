"""Several writers on one replica file: every write captured once, counters unique and
increasing across connections and processes, the file consistent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter

import syncstore
from syncstore.core import hlc as hlc_mod
from syncstore.core.merge import Cell
from syncstore.replica.store import RemoteChange

WRITER = textwrap.dedent(
    """
    import os, sys, time
    import syncstore

    path, tag, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    logged = 0
    with syncstore.open(path, busy_timeout_ms=60_000) as store:
        print("ready", flush=True)
        while not os.path.exists(go):  # start together, to overlap as much as possible
            time.sleep(0.0005)
        mine = []
        for n in range(count):
            # A pause between writes, as an agent has: SQLite's busy handler sleeps
            # and retries, so a writer in a tight loop would keep the lock to itself.
            time.sleep(0.0005)
            if n % 10 == 0:
                mine += store.insert_many("tasks", [{"title": f"{tag} batch {n}.{k}"} for k in range(5)])
                logged += 5
            elif n % 3 == 0:
                store.update("tasks", mine[n % len(mine)], {"description": f"{tag} edit {n}"})
                logged += 1
            elif n % 7 == 0:
                with store.transaction():
                    task = store.tasks.create(f"{tag} with message {n}")
                    store.messages.add(task.id, "user", "hello")
                    mine.append(task.id)
                logged += 2
            else:
                mine.append(store.insert("tasks", {"title": f"{tag} single {n}"}))
                logged += 1
    print(logged)
    """
)


def check_log(store):
    """The log as one writer would have made it: seq 1..n, stamps increasing with seq,
    each transaction's entries together; the file itself consistent."""
    entries = store.changes()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    stamps = [e.hlc for e in entries]
    assert all(a < b for a, b in zip(stamps, stamps[1:])), "stamps must increase with seq"
    txs = [e.tx for e in entries]
    assert txs == sorted(txs), "transactions must not interleave"
    assert store.last_seq() == len(entries)
    assert store.connection.execute("pragma integrity_check").fetchall() == [("ok",)]
    return entries


def test_two_connections_in_one_process_take_turns(replica_path):
    with syncstore.open(replica_path) as a, syncstore.open(replica_path) as b:
        for n in range(30):
            writer = a if n % 3 else b
            if n % 5 == 0:
                with writer.transaction():
                    writer.insert("tasks", {"title": f"tx {n} first"})
                    writer.insert("tasks", {"title": f"tx {n} second"})
            else:
                writer.insert("tasks", {"title": f"single {n}"})
        entries = check_log(a)
        assert len(entries) == 36
        assert a.changes() == b.changes()
        assert Counter(e.tx for e in entries).most_common(1)[0][1] == 2


def test_a_remote_stamp_seen_by_one_connection_is_respected_by_the_other(replica_path):
    ahead = hlc_mod.from_ms(hlc_mod.wall_ms() + 30_000)
    with syncstore.open(replica_path) as a, syncstore.open(replica_path) as b:
        b.insert("tasks", {"title": "b first"})  # b has read the counters once
        a.apply_remote([RemoteChange("tasks", "01a215e4-e4c7-7804-a2c7-551014ae9339",
                                     {"title": Cell("from afar", ahead, b"\x7f" * 16)})])
        b.insert("tasks", {"title": "b after"})
        assert b.changes()[-1].hlc > ahead


def test_two_processes_writing_at_once_are_both_captured(tmp_path):
    path = str(tmp_path / "shared.db")
    syncstore.open(path).close()
    go = str(tmp_path / "go")
    count = 120
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, path, tag, str(count), go], stdout=subprocess.PIPE, text=True)
        for tag in ("alpha", "beta")
    ]
    for proc in writers:
        assert proc.stdout.readline().strip() == "ready"
    open(go, "w").close()
    logged = 0
    for proc in writers:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        logged += int(out.strip())

    with syncstore.open(path) as store:
        entries = check_log(store)
        assert len(entries) == logged
        inserted = [e for e in entries if e.table == "tasks" and "title" in e.values]
        titles = [e.values["title"] for e in inserted]
        assert len(set(titles)) == len(titles)
        tags = [t.split()[0] for t in titles]
        assert set(tags) == {"alpha", "beta"}
        # The writers really overlapped: their transactions alternate in the log.
        assert sum(a != b for a, b in zip(tags, tags[1:])) > 5
        # Each process's transactions are separate: no transaction holds both tags.
        for tx, group in _by_tx(entries).items():
            tags = {e.values["title"].split()[0] for e in group if "title" in e.values}
            assert len(tags) <= 1, tx
        # Every row is in the table with the stamp its entry logged.
        for entry in inserted:
            stored = store.connection.execute("select _hlc from tasks where id = ?", (entry.id,)).fetchone()
            assert stored == (entry.hlc,)
        assert store.count("tasks") == len(inserted)


def _by_tx(entries):
    groups: dict[int, list] = {}
    for entry in entries:
        groups.setdefault(entry.tx, []).append(entry)
    return groups


def test_writers_in_parallel_threads_of_one_process(replica_path):
    import threading

    errors = []

    def work(tag):
        try:
            with syncstore.open(replica_path, busy_timeout_ms=60_000) as store:
                for n in range(40):
                    store.insert("tasks", {"title": f"{tag} {n}"})
        except Exception as exc:  # reported below
            errors.append(exc)

    syncstore.open(replica_path).close()
    threads = [threading.Thread(target=work, args=(tag,)) for tag in ("t1", "t2", "t3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with syncstore.open(replica_path) as store:
        assert len(check_log(store)) == 120
        assert os.path.exists(replica_path)
