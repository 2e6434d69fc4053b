"""The domain APIs of syncstore.aio: tasks, messages, memory, tracked runs and
their events, workflows, and a background sync, all awaited."""

from __future__ import annotations

import asyncio

import pytest

import syncstore
import syncstore.aio
from syncstore.errors import NotFoundError
from syncstore.tracking import current_run
from syncstore.workflows import Registry


def test_tasks_messages_and_memory(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            task = await store.tasks.create("Summarise the logs", repository="octo/app")
            await store.messages.add(task.id, "user", "focus on errors")
            assert [m.content for m in await store.messages.for_task(task.id)] == ["focus on errors"]
            assert (await store.tasks.get(task.id)).repository == "octo/app"
            with pytest.raises(NotFoundError):
                await store.tasks.get("00000000-0000-0000-0000-000000000000")
            await store.memory.add("planner", "deploys fail when the cache is cold", context_key="deploys")
            hits = await store.memory.search("why do deploys fail?", agent_id="planner", k=1)
            assert hits[0].memory.context_key == "deploys"
            assert "search" in dir(store.memory)

    asyncio.run(main())


def test_a_tracked_run_links_the_events_of_its_block_in_the_callers_task(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            async with store.executions.track("planner", input={"goal": "g"}) as run:
                assert current_run() is run and store.executions.current() is run
                await store.events.emit("tool_call", component="shell")
                await run.event("model_call")
                run.usage(input_tokens=10, output_tokens=2)
                run.output = {"plan": "p"}
            assert current_run() is None
            finished = await store.executions.get(run.id)
            assert finished.status == "completed" and finished.output == {"plan": "p"}
            assert finished.token_usage["total_tokens"] == 12
            assert {e.event_type for e in await store.events.for_execution(run.id)} == {"tool_call", "model_call"}

            with pytest.raises(ValueError):
                async with store.executions.track("planner") as failing:
                    raise ValueError("no model")
            assert (await store.executions.get(failing.id)).status == "failed"

            @store.executions.tracked
            async def answer(question: str) -> str:
                await asyncio.sleep(0)
                return question.upper()

            assert await answer("why") == "WHY"
            (decorated,) = await store.executions.list(agent_type=answer.__qualname__)
            assert decorated.input == {"question": "why"} and decorated.output == "WHY"

    asyncio.run(main())


def test_events_follow_is_an_async_iterator(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            await store.events.emit("first", component="c")
            follow = store.events.follow(last=1, poll_interval=0.01)
            assert (await asyncio.wait_for(follow.__anext__(), 5)).event_type == "first"
            nxt = asyncio.ensure_future(follow.__anext__())  # polls, without holding the worker
            await store.events.emit("second", component="c")
            assert (await asyncio.wait_for(nxt, 5)).event_type == "second"
            await follow.aclose()

    asyncio.run(main())


def test_a_workflow_runs_in_the_worker(db_path):
    registry = Registry()

    @registry.step
    def square(ctx):
        return ctx.params["n"] ** 2

    flow = registry.workflow("squares", version=1, steps=[square.call(f"s{n}", params={"n": n}) for n in range(1, 4)])

    async def main():
        with syncstore.open(db_path) as plain:
            from syncstore.workflows import Workflows

            plain.workflows = Workflows(plain, registry=registry)  # the facade finds this one
            store = syncstore.aio.AsyncStore(plain)
            done = await store.workflows.execute(flow)
            assert done.status == "completed" and sorted(done.output.values()) == [1, 4, 9]
            assert (await store.workflows.get(done.id)).status == "completed"

    asyncio.run(main())


@pytest.mark.postgres
def test_sync_once_and_in_the_background(tmp_path, sync_server):
    token = sync_server.token("aio-facades-sync")

    async def main():
        async with syncstore.aio.open(str(tmp_path / "a.db")) as a, syncstore.aio.open(str(tmp_path / "b.db")) as b:
            task = await a.tasks.create("from A")
            pushed = await a.sync(sync_server.url, token=token)
            assert pushed.pushed == 1 and pushed.rejected == 0
            handle = await b.start_sync(sync_server.url, token=token, poll_interval=0.2)
            try:
                assert await handle.wait_synced(30)
                while await b.tasks.find(task.id) is None:
                    await asyncio.sleep(0.05)
                assert (await handle.status()).connected
            finally:
                await handle.stop()
            assert (await b.sync_status()).last_error is None

    asyncio.run(main())
