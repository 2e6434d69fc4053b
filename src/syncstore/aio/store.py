"""The store for asyncio code: every call awaitable, none blocking the loop.

    async with syncstore.aio.open("agent.db") as store:
        task = await store.tasks.create("Summarise the logs")
        async with store.transaction():
            await store.update("tasks", task.id, {"status": "in_progress"})
            await store.messages.add(task.id, "assistant", "reading logs")
        await store.sync(url, token=token)
        async for change in store.changes("tasks"):
            ...

Store calls run in the store's worker thread (:mod:`syncstore.aio.worker`),
one at a time, in the order they were made. A sync round runs in a thread of
its own (it uses a connection of its own), so store calls go on during it.

A transaction (``async with store.transaction()``) holds the replica for the
task that opened it and for the tasks it starts inside the block: calls from
any other task wait until it commits or rolls back, so they never land inside
it.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable, Mapping, Sequence, TypeVar

from syncstore.aio.changes import Changes
from syncstore.aio.facades import AsyncEvents, AsyncExecutions, Facade
from syncstore.aio.worker import Worker, worker_for
from syncstore.errors import SyncstoreError
from syncstore.store import Store

if TYPE_CHECKING:
    from syncstore.replica.store import LoggedChange
    from syncstore.sync import RoundResult, SyncHandle, SyncStatus

T = TypeVar("T")

class AsyncStore:
    """An open :class:`~syncstore.Store` driven from asyncio. Make one with
    :func:`open`, or around a store already open with ``AsyncStore(store)``."""

    def __init__(self, store: Store):
        self.store = store
        self.worker: Worker = worker_for(store)
        # The domain APIs' modules take a while to import: import them in the worker
        # now rather than on the loop when a facade is first used.
        self.worker.submit(_import_domains)

    # --- the domain APIs, awaitable (see syncstore.aio.facades) -----------------

    @cached_property
    def tasks(self) -> Any:
        from syncstore.tasks import Tasks

        return Facade(self.worker, lambda: self.store.tasks, Tasks)

    @cached_property
    def messages(self) -> Any:
        from syncstore.tasks import Messages

        return Facade(self.worker, lambda: self.store.messages, Messages)

    @cached_property
    def environments(self) -> Any:
        from syncstore.environments import Environments

        return Facade(self.worker, lambda: self.store.environments, Environments)

    @cached_property
    def executions(self) -> Any:
        from syncstore.executions import Executions

        return AsyncExecutions(self.worker, lambda: self.store.executions, Executions)

    @cached_property
    def events(self) -> Any:
        from syncstore.events import Events

        return AsyncEvents(self.worker, lambda: self.store.events, Events)

    @cached_property
    def memory(self) -> Any:
        from syncstore.memory import Memory

        return Facade(self.worker, lambda: self.store.memory, Memory)

    @cached_property
    def workflows(self) -> Any:
        from syncstore.workflows import Workflows

        return Facade(self.worker, lambda: self.store.workflows, Workflows)

    # --- running calls --------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the store's worker thread, in turn with every
        other call: the way to await code of your own that uses the store."""
        return await self.worker.run(fn, *args, **kwargs)

    def transaction(self) -> _AsyncTransaction:
        """``async with store.transaction():`` an atomic block, as the store's
        ``transaction()``: nested blocks are savepoints. Calls of other tasks
        wait until it ends."""
        return _AsyncTransaction(self)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this store."""
        return self.store.in_transaction

    # --- the replica's operations ---------------------------------------------

    @property
    def path(self) -> str:
        return self.store.path

    @property
    def site_id(self) -> bytes:
        return self.store.site_id

    @property
    def readonly(self) -> bool:
        return self.store.readonly

    async def insert(self, table: str, values: Mapping[str, Any], *, hlc: int | None = None) -> str:
        return await self.run(self.store.insert, table, values, hlc=hlc)

    async def insert_many(self, table: str, rows: Iterable[Any], **options: Any) -> list[str]:
        rows = list(rows)  # read here: an iterator must not be consumed in another thread
        return await self.run(self.store.insert_many, table, rows, **options)

    async def update(self, table: str, row_id: str, values: Mapping[str, Any], **options: Any) -> None:
        await self.run(self.store.update, table, row_id, values, **options)

    async def delete(self, table: str, row_id: str) -> None:
        await self.run(self.store.delete, table, row_id)

    async def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        return await self.run(self.store.get, table, row_id)

    async def rows(self, table: str, **options: Any) -> list[dict[str, Any]]:
        return await self.run(self.store.rows, table, **options)

    async def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        return await self.run(self.store.query, sql, params)

    async def count(self, table: str) -> int:
        return await self.run(self.store.count, table)

    async def cells(self, table: str, row_id: str) -> Any:
        return await self.run(self.store.cells, table, row_id)

    async def tombstone(self, table: str, row_id: str) -> tuple[int, bytes] | None:
        return await self.run(self.store.tombstone, table, row_id)

    async def apply_remote(self, changes: Iterable[Any]) -> list[Any]:
        return await self.run(self.store.apply_remote, list(changes))

    async def logged_changes(self, *, after: int = 0, limit: int | None = None) -> list[LoggedChange]:
        """The local change log after ``after`` (the store's ``changes(after=...)``;
        here ``changes`` is the live stream)."""
        return await self.run(self.store.changes, after=after, limit=limit)

    async def last_seq(self) -> int:
        return await self.run(self.store.last_seq)

    async def status(self) -> dict[str, Any]:
        return await self.run(self.store.status)

    async def meta_get(self, key: str, default: Any = None) -> Any:
        return await self.run(self.store.meta_get, key, default)

    async def meta_set(self, key: str, value: Any) -> None:
        await self.run(self.store.meta_set, key, value)

    def changes(self, table: str | None = None) -> Changes:
        """Committed changes of ``table`` (every table when None) from now on, as
        an async iterator: ``async for change in store.changes("tasks")``."""
        return Changes(self.store, table)

    def subscribe(self, table: str | None, callback: Callable[[list[Any]], None]) -> Callable[[], None]:
        """The store's ``subscribe`` (the callback runs in the committing thread)."""
        return self.store.subscribe(table, callback)

    # --- sync -----------------------------------------------------------------

    async def sync(self, url: str, *, token: str, timeout: float | None = 60.0, **options: Any) -> RoundResult:
        """One round with the sync server, in a thread of its own."""
        return await asyncio.to_thread(self.store.sync, url, token=token, timeout=timeout, **options)

    async def start_sync(self, url: str, *, token: str, **options: Any) -> AsyncSyncHandle:
        """Keep syncing in the background; returns a handle whose waits are awaitable."""
        handle = await asyncio.to_thread(self.store.start_sync, url, token=token, **options)
        return AsyncSyncHandle(handle)

    async def sync_status(self) -> SyncStatus:
        return await self.run(self.store.sync_status)

    # --- closing --------------------------------------------------------------

    async def close(self) -> None:
        """Close the store (in its worker, after the calls queued before this)."""
        if not self.worker.closed:
            await self.worker.run(_close, self.store)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<syncstore.aio.AsyncStore {self.path!r}>"


class _AsyncTransaction:
    def __init__(self, store: AsyncStore):
        self._worker = store.worker
        self._replica = store.store
        self._cm: Any = None
        self._held: contextvars.Token[object | None] | None = None

    async def __aenter__(self) -> None:
        worker = self._worker
        if not worker.holding:  # the outermost block: hold the store (inner ones are savepoints)
            self._held = await worker.hold()
        self._cm = self._replica.transaction()
        future = worker.submit(self._cm.__enter__)
        try:
            await asyncio.shield(asyncio.wrap_future(future))
        except BaseException as exc:
            # Cancelled (or failed) while beginning: the begin may still run, so end
            # whatever it opened right after it (calls run in order).
            worker.submit(self._abandon, future, type(exc), exc)
            self._release()
            raise

    def _abandon(self, began: Any, exc_type: type[BaseException], exc: BaseException) -> None:
        if not began.cancelled() and began.exception() is None:
            self._cm.__exit__(exc_type, exc, None)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            # The commit (or rollback) runs whatever happens to this task now.
            await asyncio.shield(asyncio.wrap_future(self._worker.submit(self._cm.__exit__, exc_type, exc, tb)))
        finally:
            self._release()

    def _release(self) -> None:
        if self._held is not None:
            self._worker.release(self._held)
            self._held = None


class AsyncSyncHandle:
    """A background sync (``await store.start_sync(...)``) with awaitable waits."""

    def __init__(self, handle: SyncHandle):
        self.handle = handle

    @property
    def running(self) -> bool:
        return self.handle.running

    @property
    def connected(self) -> bool:
        return self.handle.connected

    def wake(self) -> None:
        self.handle.wake()

    async def status(self) -> SyncStatus:
        return await asyncio.to_thread(self.handle.status)

    async def wait_synced(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.handle.wait_synced, timeout)

    async def stop(self, timeout: float | None = 10.0) -> None:
        await asyncio.to_thread(self.handle.stop, timeout)


def _close(store: Store) -> None:
    # Closing the last connection copies the WAL into the database file while
    # holding the GIL, which would stall the event loop's thread for as long: copy
    # it first with a statement (apsw lets go of the GIL while one runs).
    if not store.readonly:
        try:
            store.query("pragma wal_checkpoint(PASSIVE)")
        except SyncstoreError:  # busy or odd: close copies what is left
            pass
    store.close()


def _import_domains() -> None:
    import syncstore.environments  # noqa: F401
    import syncstore.events  # noqa: F401
    import syncstore.executions  # noqa: F401
    import syncstore.memory  # noqa: F401
    import syncstore.tasks  # noqa: F401
    import syncstore.workflows  # noqa: F401


def _open_store(path: str | os.PathLike[str], options: dict[str, Any]) -> Store:
    store = Store(path, **options)
    _import_domains()
    return store


class _Opening:
    """What :func:`open` returns: await it, or use it with ``async with``."""

    def __init__(self, path: str | os.PathLike[str], options: dict[str, Any]):
        self._path = path
        self._options = options
        self._store: AsyncStore | None = None

    async def _open(self) -> AsyncStore:
        # Opening migrates and may wait for another writer: not on the loop.
        store = await asyncio.to_thread(_open_store, self._path, self._options)
        return AsyncStore(store)

    def __await__(self) -> Generator[Any, None, AsyncStore]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncStore:
        self._store = await self._open()
        return self._store

    async def __aexit__(self, *exc: object) -> None:
        if self._store is not None:
            await self._store.close()


def open(path: str | os.PathLike[str], **options: Any) -> _Opening:  # noqa: A001 - mirrors syncstore.open
    """Open (creating if needed) the replica at ``path`` for asyncio:
    ``store = await syncstore.aio.open(path)`` or ``async with syncstore.aio.open(path) as store``.
    Options as for :func:`syncstore.open`."""
    return _Opening(path, options)
