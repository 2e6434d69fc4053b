"""Background sync: a supervised thread that keeps one connection open, and reconnects.

The thread opens its own connection to the replica file (apsw connections
are not shared between threads here, and a long apply must not hold the
application's connection). Local writes through the owning store wake it, so
they go out at once; writes by other processes on the same file are found by
polling the change log.

The thread never dies of a failure. Every transport, OS and protocol error
(a refused or reset connection, a handshake cut off, a connection lost
without a close frame, a server error, a file locked for too long) and even
an unexpected exception (a bug: logged with its traceback) is retried after
an exponentially growing, jittered delay. Only a condition no retry can mend
stops it (:func:`permanent`: a refused token, a replica of another tenant or
a copy of another replica, a protocol the server does not speak, ...), and
then :meth:`SyncHandle.status`, ``sync_status()`` and ``syncstore sync
status`` say in one line what stopped it and what to do.
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
from syncstore.sync.connection import SyncConnection, sync_error
from syncstore.sync.state import SyncState
from syncstore.sync.status import SyncStatus, read_status
from syncstore.sync.transport import DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, Transport

log = logging.getLogger("syncstore.sync")

# What to do about each condition that stops the background sync for good.
_ADVICE = {
    "auth": "start the sync again with a valid token",
    "auth_required": "start the sync again with a token",
    "bad_token": "start the sync again with a token minted by this server's secret",
    "token_expired": "start the sync again with a fresh token",
    "token_revoked": "start the sync again with a new token",
    "forbidden": "start the sync again with a token that has the scope",
    "tenant_mismatch": "use a separate replica file per tenant",
    "tenant_deleted": "the tenant is gone from the server: stop syncing this replica, or sync it as another tenant in a new file",
    "protocol_version": "upgrade syncstore on the client or the server so both speak one protocol",
    "bad_site": "open a new replica file and sync it",
    "bad_shape": "start the sync again with shapes this client can sync",
    "too_large": "split the local transaction",
    "not_a_replica": "point the sync at a syncstore replica file",
    "schema_version": "upgrade syncstore: the replica was made by a newer version",
}


def permanent(exc: BaseException) -> bool:
    """Whether no retry can succeed: only a SyncError marked so (a refused
    token, or a condition named in :data:`_ADVICE`). Everything else is retried."""
    return isinstance(exc, SyncError) and exc.retryable is False


def stopped_line(exc: SyncError) -> str:
    """One line: what stopped the sync, and what to do."""
    advice = _ADVICE.get(exc.code) or (
        "start the sync again with a valid token" if isinstance(exc, AuthError) else "fix that, then start the sync again"
    )
    return f"sync stopped ({exc.code}): {exc}; {advice}"


def retryable(exc: SyncstoreError) -> bool:
    """Whether another connection may succeed (the opposite of :func:`permanent`)."""
    return not permanent(sync_error(exc))


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
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        transport_factory: Callable[..., Transport] = Transport,
    ):
        self.path = path
        self.url = url
        self._token = token
        self._notify = notify
        self._backoff = dict(base=backoff_base, maximum=backoff_max)
        self._backoff_max = backoff_max
        self._options: dict[str, Any] = dict(
            poll_interval=poll_interval,
            max_in_flight=max_in_flight,
            open_timeout=open_timeout,
            shapes=shapes,
            max_queue=max_queue,
            max_queue_bytes=max_queue_bytes,
            transport_factory=transport_factory,
        )
        self._busy_timeout_ms = busy_timeout_ms
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connection: SyncConnection | None = None
        self._session: cs.ClientSession | None = None
        self._connects = 0
        self.failures = 0  # connections that failed so far (each retried)
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

    @property
    def stopped(self) -> str | None:
        """One line: what stopped the thread for good and what to do (None while it runs)."""
        error = self.error
        if error is None or self.running:
            return None
        return stopped_line(error) if isinstance(error, SyncError) else f"sync stopped: {error}"

    def status(self) -> SyncStatus:
        connected = self.connected
        replica = Replica(self.path, readonly=True, busy_timeout_ms=self._busy_timeout_ms)
        try:
            return read_status(replica, running=self.running, connected=connected, stopped=self.stopped)
        finally:
            replica.close()

    def wake(self) -> None:
        """Push now: called by the owning store after each local commit."""
        connection = self._connection
        if connection is not None:
            connection.wake()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every local change and conflict resolution so far is
        acknowledged and the server's log is applied; False if ``timeout``
        passed first or the sync stopped."""
        replica = Replica(self.path, readonly=True, busy_timeout_ms=self._busy_timeout_ms)
        try:
            target = replica.last_seq()
            state = SyncState(replica)

            def synced() -> bool:
                return self._synced(target) and not state.pending_resolutions()

            with self._changed:
                return self._changed.wait_for(lambda: synced() or not self.running, timeout) and synced()
        finally:
            replica.close()

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
        replica: Replica | None = None
        delays = backoff_delays(**self._backoff)
        try:
            while not self._stop.is_set():
                connects = self._connects
                retry_after = 0.0
                try:
                    if replica is None:
                        replica = Replica(self.path, busy_timeout_ms=self._busy_timeout_ms)
                        if self._connects == 0:
                            SyncState(replica).stop(None)  # a new supervisor: the last one's stop is history
                    connection = SyncConnection(
                        replica, self.url, token=self._token, notify=self._notify, on_update=self._update, **self._options
                    )
                    self._connection = connection
                    connection.run(until_settled=False, stop=self._stop)
                except Exception as exc:
                    error = sync_error(exc)
                    self.failures += 1
                    self._record(replica, str(error))
                    if permanent(error):
                        line = stopped_line(error)
                        log.error("%s", line)
                        self.error = error
                        self._record_stop(replica, line)
                        return
                    if error.code == "internal":
                        # A bug below: keep its traceback, and keep syncing.
                        log.error("sync connection failed unexpectedly, will retry: %s", error, exc_info=exc)
                        if replica is not None:
                            replica = self._reopen(replica)  # a fresh connection to the file, in case it was the fault
                    else:
                        log.warning("sync connection failed, will retry: %s", error)
                    retry_after = error.retry_after or 0.0
                finally:
                    self._connection = None
                    self._update(None)
                if self._connects > connects:
                    delays = backoff_delays(**self._backoff)  # it worked for a while: start over
                self._stop.wait(max(next(delays), min(retry_after, self._backoff_max)))
        except BaseException as exc:  # pragma: no cover - only an interpreter shutdown gets here
            log.exception("sync thread ended")
            self.error = exc if isinstance(exc, SyncstoreError) else SyncError(f"sync thread ended: {exc!r}")
            raise
        finally:
            if replica is not None:
                _close(replica)
            with self._changed:
                self._changed.notify_all()

    def _record(self, replica: Replica | None, message: str) -> None:
        """Keep the failure as the replica's last error (if the file lets us)."""
        if replica is None:
            return
        try:
            SyncState(replica).failed(message)
        except Exception as exc:  # the file is busy or broken: the log has it
            log.warning("cannot record the sync error in %s: %s", self.path, exc)

    def _record_stop(self, replica: Replica | None, line: str) -> None:
        try:
            if replica is None:
                replica = self._reopen(None)
            if replica is not None:
                SyncState(replica).stop(line)
        except Exception as exc:
            log.warning("cannot record why the sync stopped in %s: %s", self.path, exc)

    def _reopen(self, replica: Replica | None) -> Replica | None:
        if replica is not None:
            _close(replica)
        try:
            return Replica(self.path, busy_timeout_ms=self._busy_timeout_ms)
        except Exception:
            return None  # the next attempt opens it (or says why it cannot)


def _close(replica: Replica) -> None:
    try:
        replica.close()
    except Exception as exc:
        log.debug("closing the sync thread's replica connection: %s", exc)
