"""Durable workflow steps: the engine's cost per step, beside a plain apsw commit.

    .venv/bin/python benchmarks/workflow_steps.py [--steps N] [--workflows N] [--rounds N]

Four measurements, in one process, on files in one temporary folder with the
same connection settings (WAL, synchronous=NORMAL):

- direct: calling the no-op step function itself;
- apsw: the anchor, a hand-written durable step: ``BEGIN IMMEDIATE``, insert
  the step's result row, ``COMMIT``, once per step;
- engine step: one workflow of N no-op steps through the engine; the time
  between consecutive step calls is one step's full cost (record its output
  and snapshot, check the lease and the control column, move current_step,
  commit, call the next function);
- apsw workflow: the anchor for that, a hand-written single-step workflow:
  insert the execution row and commit; insert the step's result, mark the
  execution done and commit;
- engine workflow: N single-step workflows, each started, run and finished
  (``store.workflows.execute``): two commits each, plus reading the result back.

Each round uses fresh files; the best round of each is reported (other
processes on a shared machine only ever make a round slower). Targets: a
step at most 150 us p50; at least 2,000 single-step workflows/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import syncstore
from syncstore.replica.connection import connect
from syncstore.workflows import Registry, Workflows

TARGET_STEP_US = 150.0
TARGET_WORKFLOWS_PER_S = 2_000.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure_direct(fn, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter_ns()
        fn(None)
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


def measure_apsw(folder: str, count: int) -> list[float]:
    conn, _ = connect(os.path.join(folder, "plain.db"))
    conn.execute(
        "create table step_results (id integer primary key, execution_id text, step integer, output text, at text)"
    )
    out = []
    for step in range(count):
        start = time.perf_counter_ns()
        conn.execute("begin immediate")
        conn.execute(
            "insert into step_results (execution_id, step, output, at) values (?, ?, ?, ?)",
            ("e1", step, "null", "2025-01-01T00:00:00.000000Z"),
        )
        conn.execute("commit")
        out.append((time.perf_counter_ns() - start) / 1000)
    conn.close()
    return out


def measure_apsw_workflows(folder: str, count: int) -> tuple[list[float], float]:
    conn, _ = connect(os.path.join(folder, "plain_flows.db"))
    conn.execute("create table executions (id integer primary key, status text, input text, output text, started text, ended text)")
    conn.execute("create table step_results (id integer primary key, execution_id integer, step integer, output text, at text)")
    out = []
    began = time.perf_counter()
    for _ in range(count):
        start = time.perf_counter_ns()
        conn.execute("begin immediate")
        conn.execute("insert into executions (status, input, started) values ('running', 'null', ?)", ("2025-01-01T00:00:00.000000Z",))
        execution = conn.last_insert_rowid()
        conn.execute("commit")
        conn.execute("begin immediate")
        conn.execute("insert into step_results (execution_id, step, output, at) values (?, 1, 'null', ?)", (execution, "2025-01-01T00:00:00.000000Z"))
        conn.execute("update executions set status = 'completed', output = '{}', ended = ? where id = ?", ("2025-01-01T00:00:00.000000Z", execution))
        conn.execute("commit")
        out.append((time.perf_counter_ns() - start) / 1000)
    rate = count / (time.perf_counter() - began)
    conn.close()
    return out, rate


def measure_engine(folder: str, steps: int, workflows: int) -> tuple[list[float], list[float], float]:
    registry = Registry()
    calls: list[int] = []

    @registry.step
    def noop(ctx):
        calls.append(time.perf_counter_ns())
        return None

    long_one = registry.workflow("bench_steps", version=1, steps=[noop.call(id=f"s{i}") for i in range(steps)])
    single = registry.workflow("bench_single", version=1, steps=[noop])
    with syncstore.open(os.path.join(folder, "engine.db")) as store:
        flows = Workflows(store, registry=registry)
        flows.execute(single)  # registers both definitions and warms the caches
        flows.execute(long_one)
        calls.clear()
        done = flows.execute(long_one)
        assert done.status == "completed", done
        gaps = [(b - a) / 1000 for a, b in zip(calls, calls[1:])]
        latencies = []
        began = time.perf_counter()
        for _ in range(workflows):
            start = time.perf_counter_ns()
            flows.execute(single)
            latencies.append((time.perf_counter_ns() - start) / 1000)
        rate = workflows / (time.perf_counter() - began)
    return gaps, latencies, rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000, help="steps in the long workflow")
    parser.add_argument("--workflows", type=int, default=1_000, help="single-step workflows to run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    def noop_fn(ctx):
        return None

    best: dict[str, list[float]] = {}
    best_rate = 0.0
    best_plain_rate = 0.0
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            runs = {
                "direct": measure_direct(noop_fn, args.steps),
                "apsw": measure_apsw(folder, args.steps),
            }
            runs["apsw_workflow"], plain_rate = measure_apsw_workflows(folder, args.workflows)
            gaps, latencies, rate = measure_engine(folder, args.steps, args.workflows)
            runs["step"] = gaps
            runs["workflow"] = latencies
        for name, values in runs.items():
            if name not in best or statistics.median(values) < statistics.median(best[name]):
                best[name] = values
        best_rate = max(best_rate, rate)
        best_plain_rate = max(best_plain_rate, plain_rate)

    def line(label: str, values: list[float]) -> None:
        print(f"  {label:46} p50 {pct(values, 0.5):9.2f} us   p99 {pct(values, 0.99):9.2f} us")

    print(f"durable workflow steps ({args.steps} steps, {args.workflows} workflows, best of {args.rounds} rounds)")
    line("direct call of the no-op step", best["direct"])
    line("plain apsw insert + commit per step (anchor)", best["apsw"])
    line("engine: one durable step", best["step"])
    line("plain apsw single-step workflow (anchor)", best["apsw_workflow"])
    line("engine: one single-step workflow, end to end", best["workflow"])
    step_p50 = pct(best["step"], 0.5)
    anchor = pct(best["apsw"], 0.5)
    direct = pct(best["direct"], 0.5)
    print(f"  single-step workflows/s: engine {best_rate:,.0f}, plain apsw {best_plain_rate:,.0f}"
          f" (engine at its p50 latency: {1e6 / pct(best['workflow'], 0.5):,.0f})")
    print("ratios (p50):")
    print(f"  engine step / apsw insert+commit: {step_p50 / anchor:6.2f}x")
    print(f"  engine step / direct call:        {step_p50 / direct:6.0f}x")
    print(f"  engine workflow / apsw workflow:  {pct(best['workflow'], 0.5) / pct(best['apsw_workflow'], 0.5):6.2f}x")
    print(f"  overhead over the direct call:    {step_p50 - direct:8.2f} us")
    ok_step = step_p50 <= TARGET_STEP_US
    ok_rate = best_rate >= TARGET_WORKFLOWS_PER_S
    print(f"target step p50 <= {TARGET_STEP_US:.0f} us: {'met' if ok_step else 'NOT met'}")
    print(f"target >= {TARGET_WORKFLOWS_PER_S:,.0f} single-step workflows/s: {'met' if ok_rate else 'NOT met'}")
    return 0 if ok_step and ok_rate else 1


if __name__ == "__main__":
    sys.exit(main())
