"""syncstore for asyncio: every store call awaitable, the event loop never blocked.

    import syncstore.aio

    async with syncstore.aio.open("agent.db") as store:
        task = await store.tasks.create("Summarise the build logs")
        async with store.executions.track("planner", task_id=task.id) as run:
            await store.events.emit("tool_call", component="shell")
        hits = await store.memory.search("why do deploys fail?", k=5)
        await store.sync("ws://127.0.0.1:8765", token=token)
        async for change in store.changes("tasks"):
            print(change.op, change.id)

Each store gets one worker thread (:mod:`.worker`); the pieces: the store
(:mod:`.store`), the domain APIs (:mod:`.facades`), the change stream
(:mod:`.changes`). See docs/aio.md.
"""

from syncstore.aio.changes import Changes
from syncstore.aio.facades import AsyncRun, Facade
from syncstore.aio.store import AsyncStore, AsyncSyncHandle, open
from syncstore.aio.worker import Worker, worker_for

__all__ = ["AsyncRun", "AsyncStore", "AsyncSyncHandle", "Changes", "Facade", "Worker", "open", "worker_for"]
