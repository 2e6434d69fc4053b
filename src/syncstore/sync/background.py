"""Background sync: a thread that keeps one connection open, and reconnects.

The thread opens its own connection to the replica file (apsw connections
are not shared between threads here, and a long apply must not hold the
application's connection). Local writes through the owning store wake it, so
they go out at once; writes by other processes on the same file are found by
polling the change log. A dropped connection is retried after an
exponentially growing, jittered delay; an error no retry can mend (a refused
token, a replica that belongs to another tenant) stops the thread and stays
visible in :meth:`SyncHandle.status` and :attr:`SyncHandle.error`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from syncstore.core import client_session as cs
from syncstore.errors import AuthError, SyncError, SyncstoreError
from syncstore.replica.connection import DEFAULT_BUSY_TIMEOUT_MS
from syncstore.replica.store import Change, Replica
from syncstore.resilience import backoff_delays
from syncstore.sync.connection import SyncConnection
from syncstore.sync.state import SyncState
from syncstore.sync.status import SyncStatus, read_status

log = logging.getLogger("syncstore.sync")


def retryable(exc: SyncstoreError) -> bool:
    """Whether another connection may succeed. A refused token will not; nor
    will a sync failure marked final (see :func:`syncstore.sync.connection.fatal`).
    Anything else (a dropped link, a locked file, data the server sent that
    this version cannot take) is retried, slower and slower."""
    if isinstance(exc, AuthError):
        return False
    if isinstance(exc, SyncError):
        return getattr(exc, "retryable", True)
    return True


class SyncHandle:
    """A running background sync. ``status()`` reports it, ``stop()`` ends it."""

    def __init__(
        self,
        path: str,
        url: str,
        *,
        token: str,
        notify: Callable[[list[Change]], None] | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        poll_interval: float = 1.0,
        max_in_flight: int = cs.DEFAULT_MAX_IN_FLIGHT,
        open_timeout: float = 10.0,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        shapes: Any = None,
    ):
        self.path = path
        self.url = url
        self._token = token
        self._notify = notify
        self._backoff = dict(base=backoff_base, maximum=backoff_max)
        self._options: dict[str, Any] = dict(
            poll_interval=poll_interval, max_in_flight=max_in_flight, open_timeout=open_timeout, shapes=shapes
        )
        self._busy_timeout_ms = busy_timeout_ms
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connection: SyncConnection | None = None
        self._session: cs.ClientSession | None = None
        self._connects = 0
        self.error: SyncstoreError | None = None  # what stopped the thread for good
        self.on_stop: list[Callable[[], None]] = []  # run once by stop(), e.g. to unsubscribe
        self._thread = threading.Thread(target=self._run, name="syncstore-sync", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"SyncHandle(path={self.path!r}, running={self.running})"

    # --- the public face ------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def connects(self) -> int:
        """How many connections were welcomed so far (reconnects included)."""
        return self._connects

    @property
    def connected(self) -> bool:
        """Whether a welcomed connection is open now."""
        with self._lock:
            session = self._session
            return session is not None and session.state is cs.State.READY

    def status(self) -> SyncStatus:
        connected = self.connected
        replica = Replica(self.path, readonly=True, busy_timeout_ms=self._busy_timeout_ms)
        try:
            return read_status(replica, running=self.running, connected=connected)
        finally:
            replica.close()

    def wake(self) -> None:
        """Push now: called by the owning store after each local commit."""
        connection = self._connection
        if connection is not None:
            connection.wake()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every local change so far is acknowledged and the server's
        log is applied; False if ``timeout`` passed first or the sync stopped."""
        replica = Replica(self.path, readonly=True, busy_timeout_ms=self._busy_timeout_ms)
        try:
            target = replica.last_seq()
        finally:
            replica.close()
        with self._changed:
            return self._changed.wait_for(lambda: self._synced(target) or not self.running, timeout) and self._synced(
                target
            )

    def _synced(self, target: int) -> bool:
        session = self._session
        return session is not None and session.settled and session.acked_seq >= target

    def stop(self, timeout: float | None = 10.0) -> None:
        """Close the connection cleanly and end the thread (waits up to ``timeout``)."""
        self._stop.set()
        self.wake()
        self._thread.join(timeout)
        while self.on_stop:
            self.on_stop.pop()()

    def __enter__(self) -> SyncHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the thread -----------------------------------------------------------

    def _update(self, session: cs.ClientSession | None) -> None:
        with self._changed:
            if session is not None and self._session is not session and session.state is cs.State.READY:
                self._connects += 1
            elif session is not None and session.state is not cs.State.READY:
                return
            self._session = session
            self._changed.notify_all()

    def _run(self) -> None:
        replica = Replica(self.path, busy_timeout_ms=self._busy_timeout_ms)
        try:
            delays = backoff_delays(**self._backoff)
            while not self._stop.is_set():
                connection = SyncConnection(
                    replica, self.url, token=self._token, notify=self._notify, on_update=self._update, **self._options
                )
                self._connection = connection
                connects = self._connects
                try:
                    connection.run(until_settled=False, stop=self._stop)
                except SyncstoreError as exc:
                    SyncState(replica).failed(str(exc))
                    if not retryable(exc):
                        log.error("sync stopped: %s", exc)
                        self.error = exc
                        return
                    log.warning("sync connection failed, will retry: %s", exc)
                finally:
                    self._connection = None
                    self._update(None)
                if self._connects > connects:
                    delays = backoff_delays(**self._backoff)  # it worked for a while: start over
                self._stop.wait(next(delays))
        except Exception as exc:  # keep the reason visible rather than dying silently
            log.exception("sync thread failed")
            self.error = exc if isinstance(exc, SyncstoreError) else SyncstoreError(f"sync thread failed: {exc}")
        finally:
            replica.close()
            with self._changed:
                self._changed.notify_all()
