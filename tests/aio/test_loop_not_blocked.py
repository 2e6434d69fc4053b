"""No syncstore.aio call blocks the event loop: with asyncio's debug mode on and
every loop callback measured (see conftest), none keeps the loop longer than a
few milliseconds while an agent's worth of work (opening, bulk writes,
transactions, queries, memory search, a tracked run, a workflow, LangGraph
checkpoints, a sync round with a real server, closing) goes through the
store. The same work done with the synchronous store from a coroutine is
caught, so the detection works."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.checkpoint.base import empty_checkpoint

import syncstore
import syncstore.aio
from syncstore.integrations.langgraph import SyncstoreSaver
from syncstore.workflows import Registry, Workflows

from .conftest import run_watched

pytestmark = pytest.mark.postgres

ROWS = 3_000


def test_a_store_calls_work_never_blocks_the_loop(tmp_path, sync_server):
    # A store call that blocks the loop does so on every run; a callback that is
    # slow only because another process or thread took the CPU meanwhile does not
    # (see conftest): so the work gets up to three runs to be clean once.
    for attempt in range(3):
        watch = run_watched(lambda: agent(str(tmp_path / f"run{attempt}.db"), sync_server, f"aio-{attempt}"))
        if not watch.blocking:
            break
    assert watch.blocking == [], watch.reports


async def agent(db_path, sync_server, tenant):
    token = sync_server.token(tenant)
    async with syncstore.aio.open(db_path) as store:
        feed = store.changes("tasks")
        ids = await store.insert_many("tasks", [{"title": f"task {i}"} for i in range(ROWS)])
        async with store.transaction():
            for row_id in ids[:300]:
                await store.update("tasks", row_id, {"status": "in_progress"})
        assert len(await store.rows("tasks", where={"status": "in_progress"})) == 300
        assert await store.count("tasks") == ROWS
        for i in range(30):
            await store.memory.add("planner", f"deploys fail when cache {i} is cold", context_key=f"k{i}")
        assert await store.memory.search("why do deploys fail?", agent_id="planner", k=5)
        async with store.executions.track("planner") as run:
            for i in range(50):
                await store.events.emit("tool_call", component="shell", operation=f"op {i}")
        assert len(await store.events.for_execution(run.id)) == 50
        registry = Registry()

        @registry.step
        def double(ctx):
            return 2 * ctx.params["n"]

        flow = registry.workflow("doubles", version=1, steps=[double.call(f"d{n}", params={"n": n}) for n in range(20)])
        done = await store.run(lambda: Workflows(store.store, registry=registry).execute(flow))
        assert done.status == "completed"
        await _checkpoints(store)
        result = await store.sync(sync_server.url, token=token)
        assert result.rejected == 0 and result.pushed > ROWS
        seen = 0
        while feed.pending:
            await feed.__anext__()
            seen += 1
        assert seen >= ROWS + 300
        feed.close()


async def _checkpoints(store):
    saver = SyncstoreSaver(store)
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    for step in range(30):
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": ["m"] * 200}
        checkpoint["channel_versions"] = {"messages": saver.get_next_version(None, None)}
        config = await saver.aput(config, checkpoint, {"source": "loop", "step": step}, checkpoint["channel_versions"])
    assert len([t async for t in saver.alist(None)]) == 30


def test_the_same_work_on_the_synchronous_store_is_reported(db_path):
    async def blocking():
        with syncstore.open(db_path) as store:
            store.insert_many("tasks", [{"title": f"task {i}"} for i in range(ROWS)])
            await asyncio.sleep(0)

    watch = run_watched(blocking)
    assert watch.blocking and watch.blocking[0].wall > 0.02
    assert watch.reports and " took " in watch.reports[0]  # asyncio's debug mode saw it too
