"""The console's link to a sync server, when one is configured.

With a server URL and a token the console keeps its replica in sync in the
background (``store.start_sync``), so what it shows is live and its writes go
out at once; "sync now" wakes that sync and waits for it to catch up, or runs
one round when the background sync has stopped for good (a refused token).
Without them the console works on the replica alone and says so. The token
is held here only to pass it to the sync client: it is never shown or logged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec

from syncstore.errors import SyncError
from syncstore.store import Store
from syncstore.sync import SyncHandle, SyncStatus

log = logging.getLogger("syncstore.console")

# A person watching the banner wants a returning server noticed within seconds,
# not after the library's default backoff of up to half a minute.
BACKOFF_MAX = 3.0
# "Sync now" while offline waits this long for the background sync to reconnect
# (it retries at least every BACKOFF_MAX seconds) before saying the server is away.
RECONNECT_WAIT = 2 * BACKOFF_MAX


class Banner(msgspec.Struct, frozen=True, kw_only=True):
    """What the banner on every page says."""

    state: str  # "online", "offline", "stopped" (for good: see ``stopped``) or "local" (no server configured)
    server: str | None
    pending: int  # what the server has still to hear of: changes and conflict resolutions
    resolutions: int  # ... of which resolutions
    last_synced_at: str | None
    rejected: int
    conflicts: int
    last_error: str | None
    stopped: str | None  # why the background sync stopped for good, and what to do
    clock_ahead_ms: int  # how far this machine's clock runs past what the server accepts (0: fine)


class SyncControl:
    """Background sync of the console's store, and the "sync now" button behind it."""

    def __init__(
        self,
        store: Store,
        *,
        url: str | None = None,
        token: str | None = None,
        backoff_max: float = BACKOFF_MAX,
        poll_interval: float = 0.5,
    ):
        if (url is None) != (token is None):
            raise SyncError("give both the sync server's URL and a token, or neither")
        self.store = store
        self.url = url
        self._token = token
        self._options: dict[str, Any] = dict(backoff_base=0.2, backoff_max=backoff_max, poll_interval=poll_interval)
        self.handle: SyncHandle | None = None

    def __repr__(self) -> str:  # never the token
        return f"SyncControl(url={self.url!r}, running={self.running})"

    @property
    def configured(self) -> bool:
        return self.url is not None

    @property
    def running(self) -> bool:
        return self.handle is not None and self.handle.running

    @property
    def online(self) -> bool:
        return self.handle is not None and self.handle.connected

    def start(self) -> None:
        if self.configured and not self.running:
            self.handle = self.store.start_sync(self.url, token=self._token, **self._options)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()

    def status(self) -> SyncStatus:
        return self.store.sync_status()

    def banner(self, status: SyncStatus | None = None) -> Banner:
        """The banner's figures, from ``status`` when the caller has read it already."""
        status = status or self.status()
        if not self.configured:
            state = "local"
        elif self.online:
            state = "online"
        else:
            state = "offline" if self.running else "stopped"
        return Banner(
            state=state,
            server=self.url,
            pending=status.pending,
            resolutions=status.pending_resolutions,
            last_synced_at=status.last_synced_at,
            rejected=status.rejected,
            conflicts=status.open_conflicts,
            last_error=status.last_error,
            stopped=status.stopped if self.configured else None,
            clock_ahead_ms=status.clock_ahead_ms,
        )

    @property
    def stopped_error(self) -> str | None:
        """Why the background sync stopped for good, if it did: one line saying what to do."""
        return None if self.handle is None else self.handle.stopped

    def sync_now(self, *, timeout: float = 30.0) -> str:
        """Push and pull now; returns a sentence saying what happened. Raises the
        sync client's errors (SyncError, AuthError) when a round fails."""
        if not self.configured:
            raise SyncError("no sync server is configured: start `syncstore ui` with --url and --token")
        if self.running:
            assert self.handle is not None
            deadline = time.monotonic() + min(timeout, RECONNECT_WAIT)
            while not self.online and self.running and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.online:
                raise SyncError(
                    f"the sync server at {self.url} cannot be reached; the changes stay queued and go out when it is back"
                )
            self.handle.wake()
            if self.handle.wait_synced(timeout):
                return "in sync with the server"
            raise SyncError(f"not in sync after {timeout:g} s: the server is slow or went away; the changes stay queued")
        result = self.store.sync(self.url, token=self._token, timeout=timeout)  # type: ignore[arg-type]
        return (
            f"synced: {result.pushed} changes pushed, {result.received} server transactions applied, "
            f"{result.conflicts} conflicts, {result.rejected} rejected"
        )
