"""Legacy import throughput: tasks per second, beside plain apsw inserts.

Generates a localStorage export (10,000 tasks with about 20 messages each by
default: prompts, answers, shell calls with their outputs), imports it into a
fresh replica with ``import_legacy`` (reading and parsing the file included),
then inserts the same rows into a plain SQLite file with apsw ``executemany``
and no change capture: the anchor. Prints both rates and their ratio.

A second reference writes what the replica's write path cannot avoid: the same
rows with the replica's own schema (its indexes and clock columns) plus the
change log entries the import made, again by plain ``executemany``. What the
import takes beyond it is the importer's own work (reading, checking, mapping,
history, integrity check) and the replica's per-row Python.

    .venv/bin/python benchmarks/legacy_import.py [--tasks 10000] [--messages 20]

Target: >= 5,000 tasks/s for the import.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
import uuid

import apsw

import syncstore
from syncstore import schema
from syncstore.legacy import import_legacy

TARGET_TASKS_PER_S = 5_000
STATUSES = ["DONE", "IN_PROGRESS", "PAUSED", "MERGED", "CANCELLED"]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _messages(rng: random.Random, count: int) -> list[dict]:
    out: list[dict] = []
    while len(out) < count:
        pick = rng.random()
        if pick < 0.15:
            out.append({"role": "user", "type": "message", "data": {"text": "please also fix the flaky test " * 2, "id": str(uuid.uuid4())}})
        elif pick < 0.55 and len(out) + 2 <= count:
            call_id = f"call_{uuid.uuid4().hex[:12]}"
            out.append(
                {
                    "role": "assistant",
                    "type": "local_shell_call",
                    "data": {"type": "local_shell_call", "call_id": call_id, "status": "completed", "action": {"type": "exec", "command": ["bash", "-lc", "pytest -q tests/unit"]}},
                }
            )
            output = json.dumps({"output": "....F....\n1 failed, 41 passed in 2.31s\n" * 3, "metadata": {"exit_code": rng.choice([0, 1]), "duration_seconds": 2.3}})
            out.append({"role": "assistant", "type": "local_shell_call_output", "data": {"type": "local_shell_call_output", "call_id": call_id, "output": output}})
        else:
            out.append(
                {
                    "role": "assistant",
                    "type": "message",
                    "data": {"type": "output_text", "text": "I looked at the failing test and changed the fixture so it no longer shares state. " * 2, "annotations": []},
                }
            )
    return out


def make_export(tasks: int, messages: int, *, seed: int = 7) -> dict:
    rng = random.Random(seed)
    base = 1_752_746_400_000
    items = []
    for i in range(tasks):
        created = base + i * 60_000
        items.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "title": f"Task {i}: make the integration suite pass again and explain what was wrong",
                "description": "",
                "messages": _messages(rng, messages + rng.randint(-3, 3)),
                "status": STATUSES[i % len(STATUSES)],
                "branch": f"codex/task-{i}",
                "sessionId": f"ibx{i:06d}",
                "repository": "acme/shop",
                "createdAt": _iso(created),
                "updatedAt": _iso(created + 30_000),
                "statusMessage": "Task completed",
                "isArchived": i % 7 == 0,
                "mode": "code" if i % 3 else "ask",
                "hasChanges": bool(i % 2),
                **({"pullRequest": {"html_url": f"https://github.com/acme/shop/pull/{i}", "number": i, "branchName": f"codex/task-{i}"}} if i % 4 == 0 else {}),
            }
        )
    envs = [
        {"id": str(uuid.uuid4()), "name": "Shop", "description": "", "githubOrganization": "acme", "githubToken": "gho_" + "x" * 36, "githubRepository": "acme/shop", "createdAt": _iso(base), "updatedAt": _iso(base)}
    ]
    return {
        "task-store": json.dumps({"state": {"tasks": items}, "version": 0}),
        "environments": json.dumps({"state": {"environments": envs}, "version": 0}),
    }


def baseline(path: str, store: syncstore.Store) -> float:
    """Plain apsw: the same rows (read back from the replica), same file settings,
    one transaction, ``executemany``, no change log."""
    tables = {name: schema.table(name).column_names for name in ("environments", "tasks", "task_messages")}
    rows = {name: list(store.connection.execute(f"select {', '.join(cols)} from {name}")) for name, cols in tables.items()}
    conn = apsw.Connection(path)
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", "NORMAL")
    for name, cols in tables.items():
        conn.execute(f"create table {name} ({', '.join(cols)}, primary key (id))")
    conn.execute("create index task_messages_task_id_idx on task_messages (task_id)")
    started = time.perf_counter()
    with conn:
        for name, cols in tables.items():
            conn.executemany(f"insert into {name} values ({', '.join('?' * len(cols))})", rows[name])
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def written(path: str, store: syncstore.Store) -> float:
    """Plain apsw again, but what the replica writes: the synced tables with the
    replica's own definitions and indexes, every column, and the change log."""
    names = ("environments", "tasks", "task_messages", "_ss_changes")
    marks = ", ".join("?" * len(names))
    found = store.connection.execute(
        f"select sql from sqlite_schema where tbl_name in ({marks}) and type in ('table', 'index') "
        "and sql is not null order by type desc",  # tables first, then their indexes
        names,
    )
    ddl = [sql for (sql,) in found]
    rows = {name: list(store.connection.execute(f"select * from {name}")) for name in names}
    conn = apsw.Connection(path)
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", "NORMAL")
    for sql in ddl:
        conn.execute(sql)
    started = time.perf_counter()
    with conn:
        for name in names:
            if rows[name]:
                conn.executemany(f"insert into {name} values ({', '.join('?' * len(rows[name][0]))})", rows[name])
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20, help="about this many messages per task")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        export_path = os.path.join(folder, "export.json")
        with open(export_path, "w") as handle:
            json.dump(make_export(args.tasks, args.messages), handle)
        size_mb = os.path.getsize(export_path) / 1e6
        with syncstore.open(os.path.join(folder, "replica.db")) as store:
            started, cpu_started = time.perf_counter(), time.process_time()
            report = import_legacy(store, export_path)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            # Taken now: the references below read every row back into memory.
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            assert report.integrity is not None and report.integrity.ok, report.integrity
            assert report.tasks.imported == args.tasks, report.tasks
            anchor = baseline(os.path.join(folder, "plain.db"), store)
            floor = written(os.path.join(folder, "written.db"), store)
        rows = report.tasks.imported + report.messages.imported + report.environments.imported
        rate = args.tasks / elapsed
        anchor_rate = args.tasks / anchor
        print(f"export: {args.tasks} tasks, {report.messages.imported} messages, {size_mb:.1f} MB")
        print(f"import_legacy:       {elapsed:7.3f} s  {rate:9,.0f} tasks/s  {rows / elapsed:9,.0f} rows/s  (target >= {TARGET_TASKS_PER_S:,} tasks/s)")
        print(f"plain apsw inserts:  {anchor:7.3f} s  {anchor_rate:9,.0f} tasks/s  {rows / anchor:9,.0f} rows/s")
        print(f"ratio: the import takes {elapsed / anchor:.2f}x the plain inserts")
        print(f"plain apsw, the replica's rows + change log: {floor:7.3f} s  {args.tasks / floor:9,.0f} tasks/s  ({floor / anchor:.2f}x the plain inserts)")
        # On a shared machine the wall time moves with the neighbours' load; the
        # CPU time of this process and its peak memory move much less.
        print(f"import CPU time {cpu:.3f} s ({args.tasks / cpu:,.0f} tasks per CPU-second); peak memory {peak_mb:,.0f} MB")
        print("target met" if rate >= TARGET_TASKS_PER_S else "target NOT met")


if __name__ == "__main__":
    main()
