"""Wake the log streams of every server instance when a merge commits.

Each merge sends ``NOTIFY syncstore_changes, '<tenant>'`` in its transaction;
PostgreSQL delivers it at commit to every listener, so a change accepted by
one instance reaches clients connected to all the others. One connection per
process listens and calls the callbacks registered for that tenant. When the
listening connection is lost it reconnects with backoff and then wakes every
stream, since notifications sent meanwhile were missed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable

import psycopg

from syncstore_server import background
from syncstore_server.store import CHANNEL

log = logging.getLogger("syncstore.server.notify")

Callback = Callable[[], None]


class Notifier:
    def __init__(
        self,
        conninfo: str,
        *,
        channel: str = CHANNEL,
        max_backoff_s: float = 5.0,
        application_name: str = "syncstore-server-listen",  # how it shows in pg_stat_activity
    ):
        self._conninfo = conninfo
        self._channel = channel
        self._application_name = application_name
        self._max_backoff_s = max_backoff_s
        self._listeners: dict[str, set[Callback]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def subscribe(self, tenant: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback()`` after each commit to ``tenant``'s log; returns an unsubscribe function."""
        self._listeners.setdefault(tenant, set()).add(callback)

        def unsubscribe() -> None:
            found = self._listeners.get(tenant)
            if found is not None:
                found.discard(callback)
                if not found:
                    del self._listeners[tenant]

        return unsubscribe

    async def start(self, *, timeout: float = 10.0) -> None:
        """Start listening; returns once the first LISTEN is in place."""
        self._task = asyncio.create_task(self._run(), name="syncstore-notifier")
        await asyncio.wait_for(self._listening.wait(), timeout)

    async def stop(self) -> None:
        await background.stop(self._task, what="the notification listener")
        self._task = None

    def wake_all(self) -> None:
        for tenant in list(self._listeners):
            self._wake(tenant)

    def _wake(self, tenant: str) -> None:
        for callback in list(self._listeners.get(tenant, ())):
            try:
                callback()
            except Exception:  # one broken stream must not stop the others
                log.exception("a log stream failed to wake")

    async def _run(self) -> None:
        backoff = 0.1
        while not background.stopping():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name=self._application_name
                ) as conn:
                    if background.stopping():
                        return
                    await conn.execute(f"LISTEN {self._channel}")
                    self._listening.set()
                    backoff = 0.1
                    self.wake_all()  # whatever was committed while we were not listening
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except psycopg.Error as exc:
                self._listening.clear()
                log.warning("lost the database notification connection (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, self._max_backoff_s)
