"""One worker thread per store: where every awaited store call runs.

A replica's connection is used by one thread at a time (a lock in
:mod:`syncstore.replica.store`), so one thread per store is all the
parallelism it can use, as in aiosqlite and psycopg's async connections. The
event loop only hands calls to that thread and awaits their results, so it is
never blocked by SQLite.

Calls run in a copy of the caller's context (as :func:`asyncio.to_thread`
does): the running execution (:mod:`syncstore.tracking`) and OpenTelemetry's
current span are seen by the call as by the caller. Calls run one after the
other in the order they were made. A cancelled await does not stop a call the
thread has started: it finishes, or rolls back, as a whole.

The worker is also the gate of the store's asyncio transactions: while a task
holds one (:meth:`Worker.hold`), calls from tasks outside it wait, so they
never land inside it. The tasks the holder starts inside the block share it
(they inherit its context).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
import weakref
from typing import Any, Callable, TypeVar

from syncstore.errors import ReplicaError
from syncstore.replica.store import Replica

T = TypeVar("T")

_WORKERS: weakref.WeakKeyDictionary[Replica, Worker] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class Worker:
    """A single thread that runs one store's calls in order."""

    def __init__(self, name: str):
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.closed = False
        self._holder: object | None = None  # the token of the open transaction
        self._released: asyncio.Event | None = None
        self._held: contextvars.ContextVar[object | None] = contextvars.ContextVar(f"{name}-held", default=None)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Queue ``fn(*args, **kwargs)`` in the caller's context; a future of its result."""
        if self.closed:
            raise ReplicaError("the store is closed")
        context = contextvars.copy_context()
        call = functools.partial(fn, *args, **kwargs) if kwargs else (functools.partial(fn, *args) if args else fn)
        return self._executor.submit(context.run, call)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the worker thread, awaited (after the open
        transaction of another task, if any, ends)."""
        while self._holder is not None and self._held.get() is not self._holder:
            assert self._released is not None
            await self._released.wait()
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    @property
    def holding(self) -> bool:
        """Whether the calling task is inside this worker's open transaction."""
        return self._holder is not None and self._held.get() is self._holder

    async def hold(self) -> contextvars.Token[object | None]:
        """Wait for any other transaction to end, then hold the store for the
        calling task (and the tasks it starts); returns what :meth:`release` takes."""
        while self._holder is not None:
            assert self._released is not None
            await self._released.wait()
        token = object()
        self._holder, self._released = token, asyncio.Event()
        return self._held.set(token)

    def release(self, held: contextvars.Token[object | None]) -> None:
        try:
            self._held.reset(held)
        except ValueError:  # released from another context
            self._held.set(None)
        released, self._holder, self._released = self._released, None, None
        if released is not None:
            released.set()

    def close(self) -> None:
        """Stop taking calls; the thread ends once the queued ones are done."""
        self.closed = True
        self._executor.shutdown(wait=False)


def worker_for(store: Replica) -> Worker:
    """The worker of ``store``, made on first use and shared by everything that
    awaits this store (AsyncStore, the LangGraph saver and store); it stops when
    the store closes."""
    with _LOCK:
        worker = _WORKERS.get(store)
        if worker is None or worker.closed:
            worker = _WORKERS[store] = Worker(f"syncstore-aio-{store.path.rsplit('/', 1)[-1][:24]}")
            store.on_close(worker.close)
            weakref.finalize(store, worker.close)
        return worker
