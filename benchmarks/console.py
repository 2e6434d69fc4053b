"""The local console's pages with real volumes: each page's server time beside
the library reads it makes, measured in the same run.

    .venv/bin/python benchmarks/console.py [--requests N] [--scales 0.1,0.3,1]

At scale 1 the replica holds 10,000 tasks, 100,000 observability events (of
2,000 agent executions, 50 each), 1,000 workflow executions (4 steps each,
4,000 snapshots), 2,000 memories and 20 environments; scales 0.1 and 0.3 hold
that much less, to show how each page's cost grows.

For every page, in one process and one run:

- library: the page module's read function called directly (the library
  calls the page makes: e.g. ``store.tasks.list`` for the task list,
  ``store.workflows.replay`` for the replay page), N times;
- page: the whole page over real HTTP from the console served by uvicorn
  (routing, the gate, the reads, the template), N times; its server time is
  the ``Server-Timing`` header the console sets on every answer, from the
  request's arrival to the start of the answer.

Reported: p50 and p95 of each, and the page's p95 over the library's p95
(the rendering's share). Target: every page's server time p95 <= 100 ms at
scale 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx

import syncstore
from syncstore import schema
from syncstore.console import ConsoleServer
from syncstore.console.gate import cookie_name
from syncstore.console.pages import conflicts, environments, executions, memory, sync, tasks, workflows
from syncstore.core.ids import uuid7
from syncstore.workflows import Registry, Workflows

TARGET_MS = 100.0
AGENTS = ("planner", "coder", "reviewer", "tester", "deployer", "summariser")
WORDS = "deploy cache build test release review merge rollback latency queue retry token budget model".split()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round((len(ordered) - 1) * q)))]


# --- the replica ---------------------------------------------------------------------


def build(path: str, scale: float) -> dict[str, Any]:
    rng = random.Random(7)
    n_tasks, n_runs, per_run = int(10_000 * scale), int(2_000 * scale), 50
    n_flows, n_memories = int(1_000 * scale), int(2_000 * scale)
    now = dt.datetime.now(dt.timezone.utc)
    store = syncstore.open(path)
    started = time.perf_counter()
    task_rows = [
        {
            "title": f"{rng.choice(WORDS)} {rng.choice(WORDS)} #{i}",
            "description": " ".join(rng.choices(WORDS, k=20)),
            "status": rng.choice(schema.TASK_STATUSES),
            "priority": rng.choice(schema.TASK_PRIORITIES),
            "repository": f"octo/repo{i % 40}",
            "is_archived": i % 25 == 0,
            # Tasks made over weeks, each edited some time after: distinct times, as a real replica holds.
            "created_at": now - dt.timedelta(minutes=3 * (n_tasks - i)),
            "updated_at": now - dt.timedelta(minutes=3 * (n_tasks - i)) + dt.timedelta(seconds=rng.randint(0, 86_400)),
        }
        for i in range(n_tasks)
    ]
    task_ids = store.insert_many("tasks", task_rows)
    for task_id in task_ids[:50]:
        for position in range(20):
            store.messages.add(task_id, ("user", "assistant")[position % 2], " ".join(rng.choices(WORDS, k=30)))
    for i in range(20):
        store.environments.create(f"env {i}", github_organization="octo", github_repository=f"repo{i}", is_active=i == 0)

    run_rows, event_rows = [], []
    for i in range(n_runs):
        run_id = uuid7()
        begin = now - dt.timedelta(minutes=n_runs - i)
        duration = rng.lognormvariate(6, 1)
        status = "failed" if rng.random() < 0.08 else "completed"
        run_rows.append({
            "id": run_id, "agent_type": AGENTS[i % len(AGENTS)], "task_id": task_ids[i % len(task_ids)], "status": status,
            "started_at": begin, "completed_at": begin + dt.timedelta(milliseconds=duration), "duration_ms": duration,
            "token_usage": {"input_tokens": rng.randint(100, 4000), "output_tokens": rng.randint(10, 800)},
            "cost": round(rng.random() / 100, 5), "model": "gpt-x", "provider": "openai",
            "error": "the tool broke" if status == "failed" else None,
        })  # fmt: skip
        for k in range(per_run):
            event_rows.append({
                "execution_id": run_id, "event_type": rng.choice(("tool_call", "llm_call", "retrieval")),
                "timestamp": begin + dt.timedelta(milliseconds=duration * k / per_run),
                "severity": rng.choice(("debug", "info", "info", "info", "warn", "error")),
                "component": rng.choice(("shell", "model", "search", "git")), "operation": rng.choice(WORDS),
                "duration_ms": rng.random() * 40, "data": {"n": k},
            })  # fmt: skip
    store.insert_many("agent_executions", run_rows)
    for start in range(0, len(event_rows), 20_000):
        store.insert_many("observability_events", event_rows[start : start + 20_000])

    registry = Registry()

    @registry.step
    def fetch(ctx):
        return {"n": ctx.input["n"], "items": list(range(ctx.input["n"] % 7))}

    @registry.step
    def double(ctx):
        return ctx.state["fetch"]["n"] * 2

    @registry.step
    def summarise(ctx):
        return {"text": f"{ctx.state['double']} items", "ok": True}

    @registry.step
    def report(ctx):
        return f"{ctx.state['double']} items"

    flows = Workflows(store, registry=registry)
    spec = registry.workflow("pipeline", steps=[fetch, double, summarise, report])
    flow_ids = [flows.execute(spec, input={"n": i % 5}).id for i in range(n_flows)]

    for i in range(n_memories):
        store.memory.add(
            AGENTS[i % len(AGENTS)],
            " ".join(rng.choices(WORDS, k=12)),
            memory_type=rng.choice(schema.MEMORY_TYPES),
            importance=rng.randint(1, 10),
            tags=rng.sample(WORDS, 2),
        )
    built = time.perf_counter() - started
    counts = {name: store.count(name) for name in ("tasks", "observability_events", "agent_executions", "workflow_executions", "execution_snapshots", "agent_memory")}
    store.close()
    return {
        "task": task_ids[0],
        "run": run_rows[len(run_rows) // 2]["id"],
        "flow": flow_ids[1],
        "flow_b": flow_ids[2],
        "built_s": built,
        "counts": counts,
    }


# --- the pages ------------------------------------------------------------------------


def pages(ids: dict[str, Any]) -> list[tuple[str, str, Callable[[syncstore.Store], Any]]]:
    """(name, URL, the library reads behind it)."""
    task, run, flow, other = ids["task"], ids["run"], ids["flow"], ids["flow_b"]
    return [
        ("tasks list", "/tasks", lambda s: tasks.task_list(s, {})),
        ("tasks, filtered, page 5", "/tasks?status=pending&page=5", lambda s: tasks.task_list(s, {"status": "pending", "page": "5"})),
        ("task detail", f"/tasks/{task}", lambda s: tasks.task_detail(s, task)),
        ("environments", "/environments", lambda s: environments.environment_list(s, {})),
        ("executions list", "/executions", lambda s: executions.execution_list(s, {})),
        ("execution detail (50 events)", f"/executions/{run}", lambda s: executions.execution_detail(s, run)),
        ("execution stats (all time)", "/executions/stats?since=all", lambda s: executions.execution_stats(s, {"since": "all"})),
        ("workflow executions", "/workflows", lambda s: workflows.execution_list(s, {})),
        ("workflow detail", f"/workflows/{flow}", lambda s: workflows.execution_detail(s, flow)),
        ("replay at step 3", f"/workflows/{flow}/replay?step=3", lambda s: workflows.replay_at(s, flow, {"step": "3"})),
        ("diff of two runs", f"/workflows/diff?a={flow}&b={other}", lambda s: workflows.diff_of(s, {"a": flow, "b": other})),
        ("memory search", "/memory?q=deploy+cache+latency", lambda s: memory.memory_search(s, {"q": "deploy cache latency"})),
        ("conflicts", "/conflicts", lambda s: conflicts.conflict_list(s, {})),
        ("sync", "/sync", lambda s: sync.sync_state(s)),
        ("banner (live fragment)", "/_/banner", lambda s: s.sync_status()),
        ("live region: task table", "/tasks?fragment=task_table", lambda s: tasks.task_list(s, {})),
    ]


def measure(path: str, ids: dict[str, Any], requests: int) -> list[tuple[str, list[float], list[float]]]:
    store = syncstore.open(path)
    console = ConsoleServer(store, port=0).start()
    results = []
    try:
        cookies = {cookie_name(console.port): console.token}
        with httpx.Client(base_url=console.base, cookies=cookies, timeout=60) as client:
            for name, url, read in pages(ids):
                for _ in range(3):  # warm: templates compiled, indexes loaded, pages cached
                    answer = client.get(url)
                    assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
                    read(store)
                library, page = [], []
                for _ in range(requests):
                    begin = time.perf_counter()
                    read(store)
                    library.append((time.perf_counter() - begin) * 1000)
                    answer = client.get(url)
                    found = re.search(r"app;dur=([\d.]+)", answer.headers["server-timing"])
                    assert found is not None
                    page.append(float(found.group(1)))
                results.append((name, library, page))
    finally:
        console.stop()
        store.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="measured requests per page")
    parser.add_argument("--scales", default="0.1,0.3,1", help="replica sizes, as fractions of the full volumes")
    args = parser.parse_args(argv)
    scales = [float(x) for x in args.scales.split(",")]
    by_scale: dict[float, list[tuple[str, list[float], list[float]]]] = {}
    for scale in scales:
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / f"console-{uuid.uuid4().hex[:6]}.db")
            ids = build(path, scale)
            counts = ", ".join(f"{v:,} {k}" for k, v in ids["counts"].items())
            print(f"\nscale {scale:g}: {counts} (built in {ids['built_s']:.1f} s)")
            results = measure(path, ids, args.requests)
            by_scale[scale] = results
            print(f"  {'page':32} {'library p50':>11} {'p95':>8}   {'page p50':>9} {'p95':>8}   {'page/library p95':>16}")
            for name, library, page in results:
                ratio = pct(page, 0.95) / max(pct(library, 0.95), 0.001)
                print(
                    f"  {name:32} {statistics.median(library):9.2f} ms {pct(library, 0.95):6.2f} ms"
                    f"   {statistics.median(page):7.2f} ms {pct(page, 0.95):6.2f} ms   {ratio:14.2f}x"
                )
    largest = max(scales)
    worst = max(by_scale[largest], key=lambda r: pct(r[2], 0.95))
    print(f"\ngrowth of the page p95 from scale {min(scales):g} to {largest:g}:")
    smallest = {name: page for name, _, page in by_scale[min(scales)]}
    for name, _, page in by_scale[largest]:
        print(f"  {name:32} {pct(smallest[name], 0.95):7.2f} ms -> {pct(page, 0.95):7.2f} ms ({pct(page, 0.95) / max(pct(smallest[name], 0.95), 0.001):.1f}x)")
    met = pct(worst[2], 0.95) <= TARGET_MS
    print(f"\nslowest page at scale {largest:g}: {worst[0]}, p95 {pct(worst[2], 0.95):.1f} ms")
    print(f"target every page's server time p95 <= {TARGET_MS:.0f} ms: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
