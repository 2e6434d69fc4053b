"""Server merge throughput: row changes per second one process merges into PostgreSQL.

The workload: a tenant holds ``--rows`` tasks written by site A. Site B pushes
``--changes`` row changes in pushes of ``--batch`` changes (local transactions
of ``--tx`` changes): half update existing tasks without having seen site A's
version (each is a conflict the server records), half insert new tasks with
every column. They go through the real merge path (schema checks, row locks,
the merge rule, staging + upsert, the change log, conflict records, acks).

The anchor, in the same run: the same final rows written by a plain psycopg
``executemany`` of ``INSERT ... ON CONFLICT DO UPDATE`` into a plain table of
the same shape (no clocks, no log, no conflict detection).

    .venv/bin/python benchmarks/sync_merge.py [--database-url URL]

Without a URL it makes (and drops) a database on the local test PostgreSQL.
Target: at least 10,000 row changes/s with conflict detection.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from syncstore import schema
from syncstore.core import protocol as p
from syncstore.core.hlc import pack, wall_ms
from syncstore.core.merge import DELETED

from syncstore_server import migrate
from syncstore_server.store import open_store

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
TENANT = "bench"
SITE_A = bytes(range(16))
SITE_B = bytes(range(16, 32))
NOW = schema.now_iso()


def task_row(i: int, title: str) -> dict:
    row = {c.name: c.default for c in schema.TABLES["tasks"].columns}
    row.update(
        id=str(uuid.UUID(int=i + 1)),
        title=title,
        description=f"task number {i}",
        repository="acme/app",
        metadata=schema.encode_json({"n": i, "tags": ["a", "b"]}),
        created_at=NOW,
        updated_at=NOW,
    )
    return row


def local_txs(changes: list[p.LocalChange], tx_size: int, first_tx: int) -> list[p.LocalTx]:
    return [p.LocalTx(first_tx + k, changes[i : i + tx_size]) for k, i in enumerate(range(0, len(changes), tx_size))]


async def merge_all(
    url: str, site: bytes, changes: list[p.LocalChange], *, batch: int, tx: int, clients: int = 1
) -> float:
    """Merge ``changes`` as ``clients`` sites pushing at once (each its share, in
    order), through one store: one server process with its connection pool."""
    async with open_store(url, pool_size=clients + 1) as store:

        async def push(client: int) -> None:
            mine = changes[client::clients]
            own_site = site if clients == 1 else bytes([client]) + site[1:]
            for start in range(0, len(mine), batch):
                chunk = [msgspec.structs.replace(c, seq=start + k + 1) for k, c in enumerate(mine[start : start + batch])]
                await store.merge(TENANT, own_site, local_txs(chunk, tx, start // tx + 1))

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(push(client) for client in range(clients)))
        elapsed = time.perf_counter() - started
        print(f"  ({len(changes)} changes: {1e6 * (time.process_time() - cpu) / len(changes):.0f} us of this "
              f"process's CPU per change, {1e6 * elapsed / len(changes):.0f} us wall)")  # fmt: skip
        return elapsed


def plain_upsert(url: str, rows: list[dict]) -> float:
    columns = schema.TABLES["tasks"].column_names
    names = ", ".join(columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE plain_tasks (LIKE syncstore.tasks INCLUDING ALL)")
        conn.execute("ALTER TABLE plain_tasks ALTER COLUMN _hlc DROP NOT NULL, ALTER COLUMN _site DROP NOT NULL")
        conn.commit()
        sql = (
            f"INSERT INTO plain_tasks (tenant, {names}) VALUES (%s, {', '.join(['%s'] * len(columns))}) "
            f"ON CONFLICT (tenant, id) DO UPDATE SET {updates}"
        )
        booleans = {c.name for c in schema.TABLES["tasks"].columns if c.type == "boolean"}
        params = [(TENANT, *[bool(r[c]) if c in booleans else r[c] for c in columns]) for r in rows]
        started = time.perf_counter()
        with conn.cursor() as cur:
            for start in range(0, len(params), 1000):
                cur.executemany(sql, params[start : start + 1000])
                conn.commit()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="a PostgreSQL database to use (its syncstore schema gets migrated)")
    parser.add_argument("--rows", type=int, default=20_000, help="existing tasks")
    parser.add_argument("--changes", type=int, default=40_000, help="row changes pushed (half conflicting)")
    parser.add_argument("--batch", type=int, default=2_000, help="changes per push")
    parser.add_argument("--tx", type=int, default=10, help="changes per local transaction")
    parser.add_argument("--clients", type=int, default=1, help="sites pushing at once into one server process")
    args = parser.parse_args()

    made = None
    url = args.database_url
    if url is None:
        made = f"syncstore_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{made}"')
        url = make_conninfo(**{**conninfo_to_dict(ADMIN_URL), "dbname": made})
    try:
        with psycopg.connect(url) as conn:
            migrate.migrate(conn)
        base = pack(wall_ms(), 0)
        half = args.changes // 2
        existing = [task_row(i, f"original {i}") for i in range(args.rows)]
        seed = [
            p.LocalChange(i + 1, "tasks", row["id"], base + i, {**row, DELETED: 0}, None)
            for i, row in enumerate(existing)
        ]
        asyncio.run(merge_all(url, SITE_A, seed, batch=args.batch, tx=args.tx))

        # Site B: half edit existing tasks having seen only the zero clock
        # (so each is concurrent with site A's insert: a conflict), half insert.
        later = base + args.rows + 10
        changes, final_rows = [], []
        for i in range(args.changes):
            if i < half:
                row = existing[i % args.rows]
                values = {"title": f"edited {i}", "status": "in_progress", "updated_at": NOW}
                seen = {name: (0, b"") for name in values}
                changes.append(p.LocalChange(i + 1, "tasks", row["id"], later + i, values, seen))
                final_rows.append({**row, **values})
            else:
                row = task_row(args.rows + i, f"new {i}")
                changes.append(p.LocalChange(i + 1, "tasks", row["id"], later + i, {**row, DELETED: 0}, None))
                final_rows.append(row)
        merged_s = asyncio.run(merge_all(url, SITE_B, changes, batch=args.batch, tx=args.tx, clients=args.clients))
        plain_s = plain_upsert(url, final_rows)

        with psycopg.connect(url) as conn:
            conflicts = conn.execute("SELECT count(*) FROM syncstore.conflicts").fetchone()[0]
        merge_rate = args.changes / merged_s
        plain_rate = args.changes / plain_s
        print(f"sync merge: {args.changes} row changes ({half} conflicting, {conflicts} conflict records) "
              f"in {merged_s:.2f} s = {merge_rate:,.0f} row changes/s")  # fmt: skip
        print(f"plain INSERT ... ON CONFLICT (executemany): {plain_s:.2f} s = {plain_rate:,.0f} rows/s")
        print(f"ratio merge/plain: {merge_rate / plain_rate:.2f}x; target >= 10,000 row changes/s: "
              f"{'met' if merge_rate >= 10_000 else 'NOT met'}")  # fmt: skip
    finally:
        if made is not None:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{made}" WITH (FORCE)')


if __name__ == "__main__":
    main()
