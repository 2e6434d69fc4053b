"""Local writes: the store (with change capture) beside plain apsw inserts of the same rows.

    .venv/bin/python benchmarks/local_writes.py [--single N] [--batches N] [--rounds N]

Both sides write the same pre-generated ``tasks`` rows into files in one
temporary folder with the same connection settings (WAL, synchronous=NORMAL).
The plain side has an identical table (same columns, same indexes) and no
capture: autocommit inserts for single rows, one ``executemany`` per 1,000 rows
for batches. The store side goes through ``Replica.insert`` (each its own
transaction) and ``insert_many`` (1,000 rows a transaction), validating every
value and logging every row. Each round starts from fresh files; the best
round of each side is reported, because other processes on a shared machine
only ever make a round slower. CPU time (user + system of this process) is
printed beside the wall-clock ratio: it is steadier on a busy machine, but
leaves out waits for the disk, so the verdict uses wall-clock time.

The ratio is store time over plain time for the same rows (1.0 = free).
Targets: at most 1.5x for single rows, 1.3x for 1,000-row transactions. A
third side, "storage alone", writes the same rows, clock columns and log
entries with raw statements and no checks: the part of the cost that is
SQLite's (every value is written twice, in the row and in its log entry);
the rest is Python.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Callable

import apsw
from msgspec.msgpack import encode

import syncstore
from syncstore import schema
from syncstore.core.ids import uuid7
from syncstore.replica.connection import connect

TABLE = schema.TABLES["tasks"]
BATCH = 1_000
TARGET_SINGLE = 1.5
TARGET_BATCH = 1.3

SQL_TYPES = {"text": "TEXT", "integer": "INTEGER", "real": "REAL", "boolean": "INTEGER",
             "json": "TEXT", "timestamp": "TEXT", "blob": "BLOB", "vector": "BLOB"}


def make_rows(count: int) -> list[dict]:
    """Rows in stored form, ids and timestamps included, so both sides write the same bytes."""
    stamp = schema.now_iso()
    statuses = schema.TASK_STATUSES
    return [
        {
            "id": uuid7(),
            "title": f"Summarise build log {n}",
            "description": "Read the failing job's log and write a short summary of the first error. " * 2,
            "status": statuses[n % len(statuses)],
            "priority": "medium",
            "branch": f"fix/{n % 50}",
            "repository": f"octo/app{n % 20}",
            "session_id": "",
            "mode": "code",
            "is_archived": 0,
            "has_changes": n % 2,
            "status_message": None,
            "pull_request": None,
            "user_id": f"user-{n % 5}",
            "metadata": '{"attempt":1,"source":"bench"}',
            "created_at": stamp,
            "updated_at": stamp,
        }
        for n in range(count)
    ]


def plain_table(path: str) -> apsw.Connection:
    """A table like the replica's ``tasks``: same columns and indexes, no hidden columns."""
    conn, _ = connect(path)
    columns = ", ".join(
        f"{c.name} {SQL_TYPES[c.type]}" + (" PRIMARY KEY NOT NULL" if c.name == "id" else "") for c in TABLE.columns
    )
    conn.execute(f"create table {TABLE.name} ({columns})")
    for name in TABLE.indexes:
        conn.execute(f"create index {TABLE.name}_{name}_idx on {TABLE.name} ({name})")
    return conn


PLAIN_INSERT = (
    f"insert into {TABLE.name} ({', '.join(TABLE.column_names)}) values ({', '.join('?' * len(TABLE.columns))})"
)


def plain_single(conn: apsw.Connection, rows: list[dict]) -> None:
    names = TABLE.column_names
    for row in rows:
        conn.execute(PLAIN_INSERT, tuple(row[n] for n in names))  # autocommit: one transaction each


def plain_batches(conn: apsw.Connection, rows: list[dict]) -> None:
    names = TABLE.column_names
    for start in range(0, len(rows), BATCH):
        conn.execute("begin immediate")
        conn.executemany(PLAIN_INSERT, [tuple(row[n] for n in names) for row in rows[start : start + BATCH]])
        conn.execute("commit")


def store_single(store: syncstore.Store, rows: list[dict]) -> None:
    for row in rows:
        store.insert("tasks", row)


def store_batches(store: syncstore.Store, rows: list[dict]) -> None:
    for start in range(0, len(rows), BATCH):
        store.insert_many("tasks", rows[start : start + BATCH])


def storage_floor(store: syncstore.Store, rows: list[dict], size: int) -> None:
    """What capture costs SQLite alone: the same rows with their clock columns and
    the same log entries, written with raw statements, nothing checked. The
    store cannot be faster than this; the gap to it is Python."""
    conn, site, names = store.connection, store.site_id, TABLE.column_names
    insert = f"insert into tasks ({', '.join(names)}, _hlc, _site) values ({', '.join('?' * (len(names) + 2))})"
    log = "insert into _ss_changes (seq, tx, tbl, pk, hlc, cols) values (?, ?, 'tasks', ?, ?, ?)"
    seq = 0
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        conn.execute("begin immediate")
        conn.executemany(insert, [(*row.values(), seq + k, site) for k, row in enumerate(chunk, 1)])
        conn.executemany(log, [(seq + k, start, row["id"], seq + k, encode({**row, "_deleted": 0}))
                               for k, row in enumerate(chunk, 1)])
        conn.execute("commit")
        seq += len(chunk)


def floor_single(store: syncstore.Store, rows: list[dict]) -> None:
    storage_floor(store, rows, 1)


def floor_batches(store: syncstore.Store, rows: list[dict]) -> None:
    storage_floor(store, rows, BATCH)


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process, user + system) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def best_of(rounds: int, rows: list[dict], folder: str, sides: dict[str, Callable]) -> dict[str, tuple[float, float]]:
    """Best wall and CPU time of each side over ``rounds`` rounds, the sides
    taking turns, fresh files each round."""
    best = dict.fromkeys(sides, (float("inf"), float("inf")))
    for n in range(rounds):
        for side, write in sides.items():
            path = os.path.join(folder, f"{side}-{write.__name__}-{n}.db")
            target = plain_table(path) if side == "plain" else syncstore.open(path)
            wall, cpu = timed(lambda: write(target, rows))
            if side == "store":
                assert target.count("tasks") == len(rows) and target.last_seq() == len(rows)
            target.close()
            best[side] = (min(best[side][0], wall), min(best[side][1], cpu))
    return best


def report(label: str, count: int, best: dict[str, tuple[float, float]], target: float) -> bool:
    (plain_wall, plain_cpu), (store_wall, store_cpu), (floor_wall, _) = best["plain"], best["store"], best["floor"]
    ratio = store_wall / plain_wall
    met = ratio <= target
    print(
        f"{label:24} plain {count / plain_wall:>9,.0f} rows/s   store {count / store_wall:>9,.0f} rows/s"
        f"   ratio {ratio:.2f}x (CPU time {store_cpu / plain_cpu:.2f}x)   target <= {target}x: {'met' if met else 'MISSED'}"
    )
    print(f"{'':24} storage alone (rows + log entries, no checks): {floor_wall / plain_wall:.2f}x")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2_000, help="rows written one transaction each")
    parser.add_argument("--batches", type=int, default=20, help="transactions of 1,000 rows")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per side; the best counts")
    args = parser.parse_args(argv)

    print(f"syncstore {syncstore.__version__}, apsw {apsw.apsw_version()}, SQLite {apsw.sqlite_lib_version()}")
    print(f"best of {args.rounds} rounds per side; the ratio is store time over plain time for the same rows")
    with tempfile.TemporaryDirectory(prefix="syncstore-bench-") as folder:
        single_rows = make_rows(args.single)
        sides = {"plain": plain_single, "store": store_single, "floor": floor_single}
        single_met = report("single-row transactions", len(single_rows), best_of(args.rounds, single_rows, folder, sides), TARGET_SINGLE)

        batch_rows = make_rows(args.batches * BATCH)
        sides = {"plain": plain_batches, "store": store_batches, "floor": floor_batches}
        batch_met = report(f"{BATCH:,}-row transactions", len(batch_rows), best_of(args.rounds, batch_rows, folder, sides), TARGET_BATCH)
    return 0 if single_met and batch_met else 1


if __name__ == "__main__":
    sys.exit(main())
