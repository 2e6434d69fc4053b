"""Bootstrap throughput: rows/s for a fresh replica to take a snapshot of many small rows.

A real sync server (its own process, ``syncstore server run``) on a fresh
PostgreSQL database holding N small rows (``task_messages``: a task id, a
position, a role, a short text), and a fresh replica syncing them: snapshot
chunks read by keyset pagination, sent over the websocket, applied with the
merge rule one local transaction per chunk. Beside it, in the same run, the
anchor: a plain apsw insert of the same rows into an identical table with no
clocks or capture (executemany, 2,000 rows per transaction, in id order as
the snapshot arrives).

    .venv/bin/python benchmarks/bootstrap.py              # 1,000,000 rows
    .venv/bin/python benchmarks/bootstrap.py --rows 50000 # a quick run

Needs the machine's PostgreSQL (SYNCSTORE_TEST_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/test for the admin connection).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import apsw
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import syncstore
from syncstore import schema
from syncstore.core import protocol as p
from syncstore.core.hlc import pack, wall_ms

from syncstore_server import auth, migrate

ADMIN_URL = os.environ.get("SYNCSTORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "bootstrap-benchmark-secret-" + "b" * 32
SYNCSTORE = str(Path(sys.executable).with_name("syncstore"))
TENANT = "bench"


def make_rows(n: int) -> list[tuple]:
    task = str(uuid.uuid4())
    return [(str(uuid.uuid4()), task, i, "user", "message", f"message {i}", "{}", "2025-01-01T00:00:00.000000Z") for i in range(n)]


def seed(url: str, rows: list[tuple]) -> None:
    """The rows as a server holds them after merging them (every cell at one clock), by COPY."""
    h, site = pack(wall_ms() - 60_000, 0), b"\x07" * 16
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        # Written as the server writes (direct SQL writes are otherwise captured and stamped anew).
        cur.execute("SELECT set_config('syncstore.writer', 'server', true)")
        with cur.copy(
            "COPY syncstore.task_messages (tenant, id, task_id, position, role, type, content, data, created_at, "
            "_deleted, _hlc, _site) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row((TENANT, *row, False, h, site))
        conn.execute("ANALYZE syncstore.task_messages")


def plain_insert(path: str, rows: list[tuple]) -> float:
    """The anchor: the same rows into an identical plain table, no clocks, no capture."""
    conn = apsw.Connection(path)
    conn.execute("pragma journal_mode = wal; pragma synchronous = normal")
    columns = schema.TABLES["task_messages"].column_names
    conn.execute(f"create table task_messages ({', '.join(columns)}, primary key (id))")
    conn.execute("create index task_messages_task_id_idx on task_messages (task_id)")
    sql = f"insert into task_messages values ({', '.join('?' * len(columns))})"
    rows = sorted(rows)  # in id order, as a snapshot arrives (random order costs the B-tree more)
    started = time.perf_counter()
    for i in range(0, len(rows), 2_000):
        with conn:
            conn.executemany(sql, rows[i : i + 2_000])
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=2_000, help="rows per snapshot chunk (the server's setting)")
    args = parser.parse_args()

    name = f"syncstore_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(**{**conninfo_to_dict(ADMIN_URL), "dbname": name})
    server = None
    try:
        with psycopg.connect(url) as conn:
            migrate.migrate(conn)
        rows = make_rows(args.rows)
        started = time.perf_counter()
        seed(url, rows)
        print(f"seeded {args.rows:,} rows in PostgreSQL in {time.perf_counter() - started:.1f}s")

        server = subprocess.Popen(
            [SYNCSTORE, "server", "run", "--database-url", url, "--port", "0", "--snapshot-rows", str(args.chunk)],
            env={**os.environ, "SYNCSTORE_SECRET": SECRET},
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        port = None
        assert server.stderr is not None
        for line in server.stderr:
            found = re.search(r"listening on [^:]+:(\d+)", line)
            if found:
                port = int(found[1])
                break
        if port is None:
            raise SystemExit("the server did not start")
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # keep the pipe drained
        token = auth.mint_token(auth.Secret(SECRET, source="bench"), tenant=TENANT)
        with tempfile.TemporaryDirectory() as folder:
            anchor = plain_insert(os.path.join(folder, "plain.db"), rows)
            store = syncstore.open(os.path.join(folder, "fresh.db"))
            started = time.perf_counter()
            result = store.sync(
                f"ws://127.0.0.1:{port}", token=token, timeout=3_600, shapes=[p.Shape("task_messages")]
            )
            elapsed = time.perf_counter() - started
            count = store.count("task_messages")
            store.close()
        assert result.snapshot_rows == args.rows == count, (result.snapshot_rows, count)
        bootstrap_rate = args.rows / elapsed
        anchor_rate = args.rows / anchor
        print(f"bootstrap: {args.rows:,} rows in {elapsed:.2f}s = {bootstrap_rate:,.0f} rows/s (target >= 100,000)")
        print(f"plain apsw insert of the same rows: {anchor:.2f}s = {anchor_rate:,.0f} rows/s")
        print(f"ratio: bootstrap takes {elapsed / anchor:.1f}x the plain insert")
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
