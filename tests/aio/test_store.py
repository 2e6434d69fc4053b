"""syncstore.aio.AsyncStore: awaitable calls, transactions that keep other tasks
out, errors as the store raises them, opening and closing."""

from __future__ import annotations

import asyncio

import pytest

import syncstore
import syncstore.aio
from syncstore.errors import ReplicaError, ValidationError


class Boom(Exception):
    pass


def test_open_awaited_or_as_a_context_manager(db_path):
    async def main():
        store = await syncstore.aio.open(db_path)
        row_id = await store.insert("tasks", {"title": "first"})
        await store.close()
        async with syncstore.aio.open(db_path) as again:
            assert (await again.get("tasks", row_id))["title"] == "first"
        with pytest.raises(ReplicaError):
            await again.get("tasks", row_id)  # closed

    asyncio.run(main())


def test_replica_operations_are_awaitable_and_match_the_store(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            ids = await store.insert_many("tasks", ({"title": f"t{i}"} for i in range(5)))
            await store.update("tasks", ids[0], {"status": "completed"})
            await store.delete("tasks", ids[1])
            assert await store.count("tasks") == 4
            assert [r["id"] for r in await store.rows("tasks", where={"status": "completed"})] == [ids[0]]
            assert (await store.query("select count(*) as n from tasks"))[0]["n"] == 4
            assert await store.tombstone("tasks", ids[1]) is not None
            assert len(await store.logged_changes()) == 7  # 5 inserts, an update, a delete
            assert await store.last_seq() == 7
            await store.meta_set("k", "v")
            assert await store.meta_get("k") == "v"
            assert (await store.status())["rows"]["tasks"] == 4

    asyncio.run(main())


def test_bad_input_raises_the_stores_error_and_writes_nothing(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            with pytest.raises(ValidationError):
                await store.insert("tasks", {"title": "ok", "status": "not-a-status"})
            with pytest.raises(ValidationError):
                await store.insert("no_such_table", {})
            assert await store.count("tasks") == 0 and await store.last_seq() == 0

    asyncio.run(main())


def test_a_transaction_is_atomic_and_keeps_other_tasks_calls_out(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            inside = asyncio.Event()

            async def rolled_back():
                with pytest.raises(Boom):
                    async with store.transaction():
                        await store.insert("tasks", {"title": "rolled back"})
                        inside.set()
                        await asyncio.sleep(0.05)  # another task writes meanwhile
                        raise Boom

            async def other_task():
                await inside.wait()
                await store.insert("tasks", {"title": "another task's write"})

            await asyncio.gather(rolled_back(), other_task())
            # The other task's write waited for the rollback instead of landing in it.
            assert [r["title"] for r in await store.rows("tasks")] == ["another task's write"]

    asyncio.run(main())


def test_tasks_started_inside_a_transaction_share_it_and_nested_blocks_are_savepoints(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            async with store.transaction():
                await asyncio.gather(*(store.insert("tasks", {"title": f"child {i}"}) for i in range(3)))
                with pytest.raises(Boom):
                    async with store.transaction():
                        await store.insert("tasks", {"title": "inner, undone"})
                        raise Boom
                assert store.in_transaction
            titles = sorted(r["title"] for r in await store.rows("tasks"))
            assert titles == ["child 0", "child 1", "child 2"]
            # One transaction: the three inserts share one tx number in the change log.
            assert len({c.tx for c in await store.logged_changes()}) == 1

    asyncio.run(main())


def test_a_task_cancelled_inside_a_transaction_rolls_it_back_and_frees_the_store(db_path):
    async def main():
        async with syncstore.aio.open(db_path) as store:
            began = asyncio.Event()

            async def stuck():
                async with store.transaction():
                    await store.insert("tasks", {"title": "never committed"})
                    began.set()
                    await asyncio.sleep(60)

            task = asyncio.create_task(stuck())
            await began.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(store.insert("tasks", {"title": "after"}), 10)
            assert [r["title"] for r in await store.rows("tasks")] == ["after"]

    asyncio.run(main())


def test_an_async_store_around_an_open_store_shares_its_worker(db_path):
    async def main():
        with syncstore.open(db_path) as plain:
            one, two = syncstore.aio.AsyncStore(plain), syncstore.aio.AsyncStore(plain)
            assert one.worker is two.worker
            row_id = await one.insert("tasks", {"title": "shared"})
            assert (await two.get("tasks", row_id))["title"] == "shared"
            assert await one.run(lambda: plain.get("tasks", row_id)["title"]) == "shared"

    asyncio.run(main())
