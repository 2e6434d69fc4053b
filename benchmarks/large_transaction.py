"""One very large local transaction synced to a fresh server and a second replica: time and peak memory.

A legacy export (10,000 tasks of about 20 messages each by default, the
shape of ``benchmarks/legacy_import.py``) is imported into replica A: one
local transaction of about 210,000 changes. Then, each in a process of its own:

- A syncs it to a fresh server (``syncstore server run``, its own process, on
  a fresh PostgreSQL database): parts pushed, staged by the server, merged
  whole in one PostgreSQL transaction;
- B, a replica that synced before the import (so it follows the log), catches
  up: the merged transaction arrives as a group of log entries, applied in one
  local transaction.

Printed: the sizes, the time of each step, the peak resident memory of each
process (the import's, A's sync, B's sync, the server's), each beside the
same process's resident memory once started and idle (its baseline, measured
in the same run) and the verdict against 300 MB for the syncing clients and
the server; then the counts in PostgreSQL, A and B, which must be equal.

    .venv/bin/python benchmarks/large_transaction.py                      # 10,000 x 20
    .venv/bin/python benchmarks/large_transaction.py --tasks 1000         # a quick run
    .venv/bin/python benchmarks/large_transaction.py --tasks 100,1000,10000   # how the costs grow

Needs the machine's PostgreSQL (SYNCSTORE_TEST_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/test for the admin connection).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ADMIN_URL = os.environ.get("SYNCSTORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "large-transaction-benchmark-" + "l" * 32
SYNCSTORE = str(Path(sys.executable).with_name("syncstore"))
TENANT = "bench"
TARGET_MB = 300


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mb() -> float:
    with open("/proc/self/status") as handle:
        found = re.search(r"VmRSS:\s+(\d+) kB", handle.read())
    return int(found[1]) / 1024 if found else 0.0


# --- the roles, each run in a process of its own ------------------------------------------


def role_import(db: str, tasks: int, messages: int) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from legacy_import import make_export

    import syncstore
    from syncstore.legacy import import_legacy

    with tempfile.TemporaryDirectory() as folder:
        export = os.path.join(folder, "export.json")
        with open(export, "w") as handle:
            json.dump(make_export(tasks, messages), handle)
        with syncstore.open(db) as store:
            baseline = current_mb()
            started = time.perf_counter()
            import_legacy(store, export)
            elapsed = time.perf_counter() - started
            changes, txs, size = store.connection.execute(
                "select count(*), count(distinct tx), sum(length(cols)) from _ss_changes"
            ).fetchone()
    return {"seconds": elapsed, "changes": changes, "transactions": txs, "bytes": size,
            "baseline_mb": baseline, "peak_mb": peak_mb()}  # fmt: skip


def role_sync(db: str, url: str, token: str) -> dict:
    import syncstore

    with syncstore.open(db) as store:
        baseline = current_mb()
        started = time.perf_counter()
        result = store.sync(url, token=token, timeout=3_600)
        elapsed = time.perf_counter() - started
        counts = {table: store.count(table) for table in ("tasks", "task_messages", "environments")}
        status = store.sync_status()
    return {"seconds": elapsed, "pushed": result.pushed, "received": result.received, "counts": counts,
            "pending": status.pending_changes, "baseline_mb": baseline, "peak_mb": peak_mb()}  # fmt: skip


def run_role(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--role", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the server ----------------------------------------------------------------------------


def server_memory(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process, in MB."""
    with open(f"/proc/{pid}/status") as handle:
        text = handle.read()
    now = re.search(r"VmRSS:\s+(\d+) kB", text)
    peak = re.search(r"VmHWM:\s+(\d+) kB", text)
    return (int(now[1]) / 1024 if now else 0.0), (int(peak[1]) / 1024 if peak else 0.0)


def start_server(url: str) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [SYNCSTORE, "server", "run", "--database-url", url, "--port", "0"],
        env={**os.environ, "SYNCSTORE_SECRET": SECRET},
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stderr is not None
    port = None
    lines = []
    for line in server.stderr:
        lines.append(line)
        found = re.search(r"listening on [^:]+:(\d+)", line)
        if found:
            port = int(found[1])
            break
    if port is None:
        raise SystemExit("the server did not start:\n" + "".join(lines))
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # keep the pipe drained
    return server, port


def run(tasks: int, messages: int) -> dict:
    """One run on a fresh database and server: the figures, printed and returned."""
    from syncstore_server import auth, migrate

    name = f"syncstore_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(**{**conninfo_to_dict(ADMIN_URL), "dbname": name})
    server = None
    try:
        with psycopg.connect(url) as conn:
            migrate.migrate(conn)
        server, port = start_server(url)
        ws = f"ws://127.0.0.1:{port}"
        token = auth.mint_token(auth.Secret(SECRET, source="bench"), tenant=TENANT)
        with tempfile.TemporaryDirectory() as folder:
            a, b = os.path.join(folder, "a.db"), os.path.join(folder, "b.db")
            first_b = run_role("sync", b, ws, token)  # b follows the (empty) log from here
            server_idle = server_memory(server.pid)[0]
            imported = run_role("import", a, str(tasks), str(messages))
            print(
                f"import: {imported['changes']:,} changes in {imported['transactions']} local transaction(s), "
                f"{imported['bytes'] / 1e6:.1f} MB of values, {imported['seconds']:.1f} s, "
                f"peak {imported['peak_mb']:.0f} MB (idle {imported['baseline_mb']:.0f} MB)"
            )
            pushed = run_role("sync", a, ws, token)
            _, server_after_push = server_memory(server.pid)
            received = run_role("sync", b, ws, token)
            _, server_peak = server_memory(server.pid)
        with psycopg.connect(url) as conn:
            in_pg = {
                table: conn.execute(f"select count(*) from syncstore.{table} where tenant = %s", (TENANT,)).fetchone()[0]
                for table in ("tasks", "task_messages", "environments")
            }
            entries = conn.execute("select count(*) from syncstore.change_log where tenant = %s", (TENANT,)).fetchone()[0]
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    changes = imported["changes"]
    print(f"push (A to a fresh server): {pushed['seconds']:.1f} s, {changes / pushed['seconds']:,.0f} changes/s, "
          f"{pushed['pushed']:,} changes acknowledged, pending after: {pushed['pending']}")  # fmt: skip
    print(f"catch-up (B, following the log): {received['seconds']:.1f} s, {changes / received['seconds']:,.0f} "
          f"changes/s, {received['received']} server transaction(s) applied; the log holds {entries} entries")  # fmt: skip
    print(f"counts: PostgreSQL {in_pg}, A {pushed['counts']}, B {received['counts']} (B before: {first_b['counts']})")
    same = in_pg == pushed["counts"] == received["counts"]
    print("rows equal everywhere" if same else "ROWS DIFFER")
    rows = [
        ("client A, sync (push)", pushed["peak_mb"], pushed["baseline_mb"]),
        ("client B, sync (receive)", received["peak_mb"], received["baseline_mb"]),
        ("server (whole run)", server_peak, server_idle),
    ]
    print(f"peak resident memory (target < {TARGET_MB} MB each), beside the same process idle:")
    for label, peak, idle in rows:
        print(f"  {label:26} {peak:6.0f} MB   idle {idle:5.0f} MB   ratio {peak / idle:4.1f}x")
    print(f"  (the server after A's push: {server_after_push:.0f} MB; the import itself: {imported['peak_mb']:.0f} MB)")
    met = same and all(peak < TARGET_MB for _, peak, _ in rows)
    print("target met" if met else "target NOT met")
    return {"changes": changes, "push_s": pushed["seconds"], "receive_s": received["seconds"],
            "peaks": [peak for _, peak, _ in rows], "met": met}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="10000", help="tasks in the export; several (100,1000,10000): one run each")
    parser.add_argument("--messages", type=int, default=20, help="about this many messages per task")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        found = role_import(rest[0], int(rest[1]), int(rest[2])) if role == "import" else role_sync(*rest)
        print(json.dumps(found))
        return
    sizes = [int(size) for size in args.tasks.split(",")]
    results = []
    for tasks in sizes:
        print(f"--- {tasks:,} tasks of about {args.messages} messages")
        results.append(run(tasks, args.messages))
    if len(results) > 1:
        print("--- growth (against the smallest run): changes, push time, receive time, peak memory A / B / server")
        base = results[0]
        for found in results:
            peaks = " / ".join(f"{peak / first:.2f}x" for peak, first in zip(found["peaks"], base["peaks"]))
            print(f"  {found['changes'] / base['changes']:7.1f}x changes   push {found['push_s'] / base['push_s']:6.1f}x   "
                  f"receive {found['receive_s'] / base['receive_s']:6.1f}x   memory {peaks}")  # fmt: skip
    print("target met at every size" if all(found["met"] for found in results) else "target NOT met")


if __name__ == "__main__":
    main()
