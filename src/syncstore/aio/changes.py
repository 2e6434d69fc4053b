"""``async for change in store.changes("tasks")``: the replica's change
notifications as an async iterator.

A :class:`Changes` subscribes when it is made (so nothing committed after
``store.changes(...)`` returns is missed) and hears of every commit of this
process's replica object that touched the table: local writes, and rows the
sync client merged in (``change.origin`` tells them apart). Commits happen in
other threads; each is handed to the event loop with ``call_soon_threadsafe``.

Changes wait in memory until read, without a bound: read them, or close the
iterator (``async with``, ``close()``, or leaving an ``async for`` over it
once it is garbage) to stop collecting.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from typing import Any, Callable

from syncstore.replica.store import Change, Replica


_BURST = 100  # changes handed out before the iterator yields to the loop once


class Changes:
    """An async iterator of :class:`~syncstore.Change`, one per row a commit touched."""

    def __init__(self, replica: Replica, table: str | None):
        self._loop = asyncio.get_running_loop()
        self._pending: collections.deque[Change] = collections.deque()
        self._arrived = asyncio.Event()
        self._closed = False
        self._served = 0
        self.table = table
        self._unsubscribe: Callable[[], None] = replica.subscribe(table, _listener(weakref.ref(self)))

    def _on_commit(self, changes: list[Change]) -> None:
        # Called in the committing thread.
        try:
            self._loop.call_soon_threadsafe(self._take, changes)
        except RuntimeError:  # the loop is closed: nobody will read these
            self.close()

    def _take(self, changes: list[Change]) -> None:
        if not self._closed:
            self._pending.extend(changes)
            self._arrived.set()

    @property
    def pending(self) -> int:
        """Changes received and not yet read."""
        return len(self._pending)

    def __aiter__(self) -> Changes:
        return self

    async def __anext__(self) -> Change:
        self._served += 1
        if self._served % _BURST == 0:
            await asyncio.sleep(0)  # a burst of thousands of changes lets other tasks run between
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._arrived.clear()
            await self._arrived.wait()
        return self._pending.popleft()

    def close(self) -> None:
        """Stop listening; an ``async for`` over this ends once the pending changes are read."""
        if not self._closed:
            self._closed = True
            self._unsubscribe()
            try:
                self._loop.call_soon_threadsafe(self._arrived.set)
            except RuntimeError:
                pass

    async def __aenter__(self) -> Changes:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._closed:
            self._closed = True
            self._unsubscribe()


def _listener(ref: weakref.ref[Changes]) -> Callable[[list[Change]], None]:
    """The replica holds this, not the iterator, so a forgotten iterator is collected."""
    def listener(changes: list[Change]) -> None:
        target = ref()
        if target is not None:
            target._on_commit(changes)

    return listener
