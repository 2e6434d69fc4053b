"""``async for change in store.changes(table)``: local commits and rows merged in
by sync, from the replica's change notifications."""

from __future__ import annotations

import asyncio
import gc

import pytest

import syncstore
import syncstore.aio


def test_local_commits_arrive_in_order_only_for_the_table_and_after_commit(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            tasks = store.changes("tasks")
            task_id = await store.insert("tasks", {"title": "a"})
            await store.insert("environments", {"name": "not a task"})
            async with store.transaction():
                await store.update("tasks", task_id, {"title": "b"})
                assert tasks.pending == 1  # not yet: the transaction has not committed
            await store.delete("tasks", task_id)
            got = [await asyncio.wait_for(tasks.__anext__(), 5) for _ in range(3)]
            assert [(c.op, c.id, c.origin) for c in got] == [
                ("insert", task_id, "local"),
                ("update", task_id, "local"),
                ("delete", task_id, "local"),
            ]
            tasks.close()

    asyncio.run(main())


def test_closing_ends_an_async_for_and_stops_listening(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            seen = []
            async with store.changes("tasks") as feed:

                async def reader():
                    async for change in feed:
                        seen.append(change.id)

                running = asyncio.create_task(reader())
                first = await store.insert("tasks", {"title": "seen"})
                while not seen:
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(running, 5)  # the loop ended with the block
            await store.insert("tasks", {"title": "after close"})
            assert seen == [first] and feed.pending == 0

    asyncio.run(main())


def test_a_forgotten_iterator_unsubscribes(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            store.changes("tasks")  # dropped at once
            gc.collect()
            assert store.store._subscribers.get("tasks") == []

    asyncio.run(main())


@pytest.mark.postgres
def test_rows_merged_in_by_sync_arrive_as_remote_changes(tmp_path, sync_server):
    token = sync_server.token("aio-changes")

    async def main():
        async with syncstore.aio.open(str(tmp_path / "a.db")) as a, syncstore.aio.open(str(tmp_path / "b.db")) as b:
            feed = b.changes("tasks")
            task = await a.tasks.create("written on A")
            await a.sync(sync_server.url, token=token)
            await b.sync(sync_server.url, token=token)
            change = await asyncio.wait_for(feed.__anext__(), 10)
            assert (change.id, change.op, change.origin) == (task.id, "insert", "remote")
            feed.close()

    asyncio.run(main())
