"""Live updates: what changed in the replica, told to every open page.

Three sources, merged into one feed of names:

- the store's change notifications: writes through the console's own store and
  changes the background sync merges in (the sync client forwards them), at
  once, with their tables;
- commits by other connections to the same file (another process, the
  background sync's own connection): a poller looks at SQLite's
  ``data_version``, which moves when another connection commits. Such a
  commit may be local writes (logged) or rows merged by a sync (not logged),
  so it names every table: a page refreshes what it shows, which is cheap;
- the sync connection coming up or going down, which writes nothing.

Each name is a synced table or ``"sync"`` (the sync state may have moved: the
banner listens to it). Every listener (one per open page's event stream)
keeps a set of names not yet sent and an event to wake it, so a slow page
never makes the feed hold more than one set per listener.

A page learns of changes only once its stream is open, a moment after it was
drawn. So every publication has a number (the feed's ``generation``); a page
is drawn with the generation as of the start of its request (taken by
:class:`MarkGeneration` before the page reads anything) and opens its stream
with it, and the stream starts with the names published since: a change
made between drawing and listening is never missed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import Any, Awaitable, Callable

from syncstore import schema
from syncstore.replica.store import Change, Replica

log = logging.getLogger("syncstore.console")

SYNC = "sync"
EVERYTHING = frozenset((*schema.TABLES, SYNC))
HISTORY = 512  # publications remembered for pages that connect late
GENERATION_KEY = "syncstore.console.generation"


class Listener:
    """One page's share of the feed."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending: set[str] = set()
        self.ready = asyncio.Event()

    def _add(self, names: frozenset[str]) -> None:  # on the loop's thread
        self.pending |= names
        self.ready.set()

    async def next(self, timeout: float) -> set[str]:
        """The names collected since the last call (empty after ``timeout`` seconds of quiet)."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except asyncio.TimeoutError:
            return set()
        self.ready.clear()
        names, self.pending = self.pending, set()
        return names


class ChangeFeed:
    """Collects changes of one replica and hands them to listeners on an event loop."""

    def __init__(self, store: Replica, *, online: Callable[[], bool] = lambda: False, poll_interval: float = 0.5):
        self.store = store
        self.poll_interval = poll_interval
        self._online = online
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()
        self.generation = 0
        self._history: collections.deque[tuple[int, frozenset[str]]] = collections.deque(maxlen=HISTORY)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # --- the listeners' side ----------------------------------------------------

    def listen(self, since: int | None = None) -> Listener:
        """A new listener (call on its event loop); with ``since``, a generation,
        it starts with every name published after it."""
        listener = Listener(asyncio.get_running_loop())
        with self._lock:
            self._listeners.add(listener)
            if since is not None and since != self.generation:
                missed = [names for number, names in self._history if number > since]
                if since > self.generation or len(missed) < self.generation - since:
                    missed = [EVERYTHING]  # from another run, or older than the history
                for names in missed:
                    listener._add(names)
        return listener

    def forget(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def publish(self, names: frozenset[str]) -> None:
        """Tell every listener (callable from any thread)."""
        with self._lock:
            self.generation += 1
            self._history.append((self.generation, names))
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.loop.call_soon_threadsafe(listener._add, names)
            except RuntimeError:  # its loop has closed: the page is gone
                self.forget(listener)

    # --- the sources --------------------------------------------------------------

    def start(self) -> None:
        self._unsubscribe = self.store.subscribe(None, self._on_commit)
        self._thread = threading.Thread(target=self._poll, name="syncstore-console-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._thread is not None:
            self._thread.join(5)

    def _on_commit(self, changes: list[Change]) -> None:
        self.publish(frozenset({change.table for change in changes} | {SYNC}))

    def _data_version(self) -> int:
        return self.store.query("pragma data_version")[0]["data_version"]

    def _poll(self) -> None:
        try:
            version = self._data_version()
        except Exception:
            log.exception("the console's change feed could not read the replica")
            return
        online = self._online()
        while not self._stop.wait(self.poll_interval):
            try:
                now_online = self._online()
                if now_online != online:
                    online = now_online
                    self.publish(frozenset({SYNC}))
                current = self._data_version()
                if current == version:
                    continue
                version = current
                self.publish(EVERYTHING)
            except Exception:  # a locked or busy file now and then must not end the feed
                log.warning("the console's change feed could not read the replica; trying again", exc_info=True)


class MarkGeneration:
    """ASGI middleware: notes the feed's generation in the request's scope before
    the page reads anything (see the module docstring)."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, feed: ChangeFeed):
        self.app = app
        self.feed = feed

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[GENERATION_KEY] = self.feed.generation
        await self.app(scope, receive, send)
