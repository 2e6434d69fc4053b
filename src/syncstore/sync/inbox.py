"""The transport's incoming queue: bounded for messages, never for wake-ups.

The reader thread puts each decoded message here and blocks while the queue
holds ``max_messages`` messages or ``max_bytes`` bytes of frames (a single
larger frame still passes when the queue is empty). While it blocks it reads
no more frames, websockets' own small buffer fills and stops reading the
socket, and TCP flow control carries the back-pressure to the server, which
then stops reading its log for this client. So a replica that applies slowly
holds a bounded amount of the server's stream in memory, whatever is behind.

Wake-ups from local writers are a flag beside the queue, not items in it: a
wake never blocks the writer that commits, and is never lost when the queue is
full (many wakes before the sync loop looks are one). The end of the stream
(``Closed``) is not bounded either, so it always reaches the loop, after every
message that came before it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_MAX_MESSAGES = 32
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class Inbox(Generic[T]):
    """Items from one reader to one consumer, plus a wake-up flag."""

    def __init__(self, *, max_messages: int = DEFAULT_MAX_MESSAGES, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._woken = False
        self._closed = False
        self._cond = threading.Condition()
        self.blocked = 0  # times the reader had to wait for room (back-pressure engaged)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def queued_bytes(self) -> int:
        with self._cond:
            return self._bytes

    def _full(self, size: int) -> bool:
        if not self._items:
            return False  # one frame larger than the byte bound still goes through
        return len(self._items) >= self.max_messages or self._bytes + size > self.max_bytes

    def put(self, item: T, size: int) -> bool:
        """Queue a message of ``size`` bytes, waiting for room. False when the
        inbox was closed meanwhile (the consumer is gone: drop it)."""
        with self._cond:
            if self._full(size) and not self._closed:
                self.blocked += 1
                self._cond.wait_for(lambda: self._closed or not self._full(size))
            if self._closed:
                return False
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()
            return True

    def put_last(self, item: T) -> None:
        """Queue the end of the stream: never waits, never dropped."""
        with self._cond:
            self._items.append((item, 0))
            self._cond.notify_all()

    def wake(self) -> None:
        """Interrupt the consumer's wait (never blocks)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def get(self, timeout: float | None) -> tuple[bool, T | None]:
        """``(True, None)`` for a wake-up, ``(False, item)`` for an item, or
        ``(False, None)`` when ``timeout`` seconds passed first. A pending
        wake-up comes first, so a busy stream never delays a local write."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._woken or self._items, timeout):
                return False, None
            if self._woken:
                self._woken = False
                return True, None
            item, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return False, item

    def close(self) -> None:
        """The consumer is done: release a reader waiting for room."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
