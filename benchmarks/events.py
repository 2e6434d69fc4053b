"""Observability events into the replica: throughput and the caller's cost.

    .venv/bin/python benchmarks/events.py [--events 200000]

Measures, in one run and on the same rows:

1. anchor: plain apsw ``executemany`` of complete rows into a table with the
   same columns and indexes as ``observability_events`` (WAL, synchronous=NORMAL,
   one transaction per 10,000 rows), with no change capture;
2. ``store.events.emit`` through the batched writer, end to end: from the
   first emit until the last event is committed, with change capture;
3. the caller's overhead per ``emit`` call while the writer thread runs flat
   out (the producer saturates it: both share one GIL);
4. the same at an agent-like pace (bursts, pauses), the writer flushing as usual;
5. the same with the writer idle (the cost of the call alone), then the
   flush of those buffered events alone: the writer's own rate, with no
   producer competing for the GIL (the gap to 2. is that competition);
6. the generic ``Replica.insert_many`` of the same events, for reference.

Targets (issue 6): >= 100,000 events/s batched, <= 10 us per emit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import apsw

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import syncstore  # noqa: E402
from syncstore.replica.migrations import available  # noqa: E402

COMPONENTS = ("planner", "search", "llm", "memory")
OPERATIONS = ("chat", "execute_tool", "embed", "recall")


def event_kwargs(i: int) -> dict:
    return dict(
        severity="warn" if i % 97 == 0 else "info",
        component=COMPONENTS[i % 4],
        operation=OPERATIONS[i % 4],
        duration_ms=float(i % 250) / 3,
        execution_id="01a215e8-214a-7b3d-a0bf-769f4f1c61da",
        trace_id="8e82ea1ae7a7d96b463268f807d44c14",
        span_id=f"{i:016x}",
        data={"step": i, "ok": True},
    )


def anchor_plain_apsw(folder: str, rows: list[tuple]) -> float:
    """Rows per second for plain apsw inserts into the same table and indexes."""
    conn = apsw.Connection(os.path.join(folder, "plain.db"))
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", "NORMAL")
    # The replica's own DDL for the table and its indexes (first migration).
    ddl = available()[0].up
    start = ddl.index("CREATE TABLE observability_events")
    end = ddl.index("CREATE TABLE", start + 10)
    conn.execute(ddl[start:end])
    names = [d[1] for d in conn.execute("pragma table_info(observability_events)")]
    sql = f"insert into observability_events ({', '.join(names)}) values ({', '.join('?' * len(names))})"
    site = os.urandom(16)
    full = [(*row, i, site, None) for i, row in enumerate(rows)]
    began = time.perf_counter()
    for offset in range(0, len(full), 10_000):
        with conn:
            conn.executemany(sql, full[offset : offset + 10_000])
    elapsed = time.perf_counter() - began
    conn.close()
    return len(full) / elapsed


def batched(folder: str, count: int) -> tuple[float, float, list[tuple]]:
    """(events/s end to end, us per emit while the writer runs, the rows written)."""
    store = syncstore.open(os.path.join(folder, "batched.db"))
    emit = store.events.emit
    kwargs = [event_kwargs(i) for i in range(count)]
    emit("warmup")
    store.events.flush()
    began = time.perf_counter()
    for kw in kwargs:
        emit("step", **kw)
    emitted = time.perf_counter()
    store.events.flush()
    done = time.perf_counter()
    rows = store.connection.execute(
        "select id, execution_id, event_type, timestamp, severity, component, operation, duration_ms, error_code, "
        "error_message, error_stack, trace_id, span_id, parent_span_id, correlation_id, data "
        "from observability_events where event_type = 'step' order by rowid"
    ).fetchall()
    logged = store.connection.execute("select count(*) from _ss_changes where tbl = 'observability_events'").fetchone()[0]
    assert len(rows) == count and logged == count + 1, (len(rows), logged)
    store.close()
    return count / (done - began), (emitted - began) / count * 1e6, rows


def idle_overhead(folder: str, count: int) -> tuple[float, float]:
    """(us per emit with the writer thread idle: the call alone,
    events/s of the one flush that then writes them, the caller waiting)."""
    store = syncstore.open(os.path.join(folder, "idle.db"))
    store.events.configure(flush_interval=3600, batch_size=count + 1, max_buffer=count + 1)
    emit = store.events.emit
    kwargs = [event_kwargs(i) for i in range(count)]
    emit("warmup")
    began = time.perf_counter()
    for kw in kwargs:
        emit("step", **kw)
    elapsed = time.perf_counter() - began
    began = time.perf_counter()
    written = store.events.flush()
    flushed = time.perf_counter() - began
    store.close()
    return elapsed / count * 1e6, written / flushed


def paced_overhead(folder: str, count: int) -> tuple[float, float]:
    """us per emit at an agent-like pace (bursts of 20, then a pause of 2 ms),
    with the writer flushing in the background as usual; and the pace reached."""
    store = syncstore.open(os.path.join(folder, "paced.db"))
    emit = store.events.emit
    kwargs = [event_kwargs(i) for i in range(count)]
    emit("warmup")
    inside = 0.0
    began = time.perf_counter()
    for offset in range(0, count, 20):
        start = time.perf_counter()
        for kw in kwargs[offset : offset + 20]:
            emit("step", **kw)
        inside += time.perf_counter() - start
        time.sleep(0.002)
    pace = count / (time.perf_counter() - began)
    store.close()
    return inside / count * 1e6, pace


def generic(folder: str, count: int) -> float:
    store = syncstore.open(os.path.join(folder, "generic.db"))
    rows = []
    for i in range(count):
        kw = event_kwargs(i)
        rows.append(dict(event_type="step", timestamp=syncstore.schema.now_iso(), **kw))
    began = time.perf_counter()
    for offset in range(0, count, 10_000):
        store.insert_many("observability_events", rows[offset : offset + 10_000])
    elapsed = time.perf_counter() - began
    store.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as folder:
        rate, overhead, rows = batched(folder, n)
        plain = anchor_plain_apsw(folder, rows)
        idle, alone = idle_overhead(folder, n)
        paced, pace = paced_overhead(folder, min(n, 50_000))
        reference = generic(folder, min(n, 50_000))
    load = os.getloadavg()[0]
    print(f"events: {n:,} (same rows in every measurement; replica with its 5 indexes)")
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} (other work skews absolute figures; ratios less)")
    print(f"plain apsw executemany, no change capture   {plain:>12,.0f} rows/s   (anchor)")
    print(f"events.emit, batched, with change capture   {rate:>12,.0f} events/s (target >= 100,000)")
    print(f"  ratio to the anchor                       {plain / rate:>12.2f}x slower")
    print(f"  the writer alone (one flush, caller idle) {alone:>12,.0f} events/s")
    print(f"caller overhead per emit, writer running    {overhead:>12.2f} us       (target <= 10)")
    print(f"caller overhead per emit, agent-like pace   {paced:>12.2f} us       ({pace:,.0f} events/s in bursts of 20)")
    print(f"caller overhead per emit, writer idle       {idle:>12.2f} us")
    print(f"Replica.insert_many (generic path)          {reference:>12,.0f} rows/s   ({rate / reference:.1f}x slower than batched)")


if __name__ == "__main__":
    main()
