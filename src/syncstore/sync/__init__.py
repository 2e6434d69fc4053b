"""The sync client: push local changes to a sync server, pull everyone else's.

    import syncstore
    store = syncstore.open("agent.db")
    store.sync("ws://localhost:8765", token=token)           # one round
    handle = store.start_sync("ws://localhost:8765", token=token)  # keep in sync
    handle.status(); handle.stop()

Pieces, each in its own module: :mod:`~syncstore.sync.transport` (the
websocket), :mod:`~syncstore.sync.connection` (one connection driven to a goal),
:mod:`~syncstore.sync.background` (reconnecting thread), :mod:`~syncstore.sync.state`
(what the replica remembers), :mod:`~syncstore.sync.status`,
:mod:`~syncstore.sync.conflicts`, :mod:`~syncstore.sync.restamp`. The protocol itself is
:mod:`syncstore.core.client_session`, with no I/O.
"""

from __future__ import annotations

import logging
from typing import Any

from syncstore.errors import SyncError, SyncstoreError
from syncstore.replica.store import Change, Replica
from syncstore.sync.background import SyncHandle
from syncstore.sync.conflicts import (
    LocalConflict,
    Rejected,
    get_conflict,
    list_conflicts,
    list_rejected,
    resolve_conflict,
)
from syncstore.sync.connection import RoundResult, SyncConnection, sync_error
from syncstore.sync.restamp import Restamped, restamp_pending
from syncstore.sync.state import SyncState
from syncstore.sync.status import SyncStatus, read_status

__all__ = [
    "LocalConflict",
    "Rejected",
    "Restamped",
    "RoundResult",
    "SyncHandle",
    "SyncStatus",
    "get_conflict",
    "list_conflicts",
    "list_rejected",
    "resolve_conflict",
    "restamp_pending",
    "start_sync",
    "sync_once",
    "sync_status",
]

DEFAULT_TIMEOUT = 60.0

log = logging.getLogger("syncstore.sync")


def _file_path(replica: Replica) -> str:
    if replica.path in ("", ":memory:") or replica.path.startswith("file::memory:"):
        raise SyncError("an in-memory replica cannot sync (the sync connection opens the file); use a file")
    return replica.path


def sync_once(replica: Replica, url: str, *, token: str, timeout: float | None = DEFAULT_TIMEOUT, **options: Any) -> RoundResult:
    """One round: push every local change written so far and pull until up to date.

    Runs in the calling thread on a connection of its own to the replica file;
    remote changes fire ``replica``'s change notifications. Raises only
    :class:`~syncstore.errors.SyncError` and its subclasses (``SyncAuthError``
    for a refused token, ``SyncClockDriftError`` when local changes must wait
    for the server's clock) when the round cannot finish within ``timeout``
    seconds; the error is also kept as the last error.
    Options: ``max_in_flight``, ``max_batch``, ``open_timeout``, ``max_frame``,
    ``max_queue``, ``max_queue_bytes``, ``transport_factory``, ``shapes``.
    """
    path = _file_path(replica)
    try:
        own = Replica(path, busy_timeout_ms=options.pop("busy_timeout_ms", replica.busy_timeout_ms))
    except Exception as exc:
        raise sync_error(exc) from exc
    try:
        connection = SyncConnection(own, url, token=token, notify=_forward(replica), **options)
        try:
            return connection.run(until_settled=True, timeout=timeout)
        except SyncError as exc:
            try:
                SyncState(own).failed(str(exc))
            except SyncstoreError as also:  # the file is busy: the caller still gets the real error
                log.warning("cannot record the sync error in %s: %s", path, also)
            raise
    finally:
        own.close()


def start_sync(replica: Replica, url: str, *, token: str, **options: Any) -> SyncHandle:
    """Keep ``replica`` in sync from a background thread until ``stop()``.

    Local writes through ``replica`` are pushed at once; the rest of the
    options are :class:`SyncHandle`'s (backoff, polling, flow control).
    """
    running = getattr(replica, "_sync_handle", None)
    if running is not None and running.running:
        raise SyncError(f"{replica.path}: a background sync is already running; stop it first")
    handle = SyncHandle(_file_path(replica), url, token=token, notify=_forward(replica), **options)

    def on_commit(changes: list[Change]) -> None:
        if any(change.origin == "local" for change in changes):
            handle.wake()

    handle.on_stop.append(replica.subscribe(None, on_commit))
    replica._sync_handle = handle  # type: ignore[attr-defined]
    return handle


def sync_status(replica: Replica) -> SyncStatus:
    """Where ``replica`` stands: pending changes and resolutions, acked
    sequence, cursor, last error, and why a background sync stopped."""
    handle: SyncHandle | None = getattr(replica, "_sync_handle", None)
    running = handle is not None and handle.running
    connected = running and handle.connected  # type: ignore[union-attr]
    return read_status(replica, running=running, connected=connected, stopped=handle.stopped if handle else None)


def _forward(replica: Replica):
    """Remote changes are applied on the sync connection; tell the listeners of
    ``replica`` (the application's connection) about them, as local ones are."""
    return replica.notify
