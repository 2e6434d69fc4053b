"""The store an agent opens: the replica plus the domain APIs on top of it."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from syncstore.environments import Environments
from syncstore.replica.store import Replica
from syncstore.tasks import Messages, Tasks

if TYPE_CHECKING:
    from syncstore.events import Events
    from syncstore.executions import Executions
    from syncstore.memory import Memory
    from syncstore.sync import RoundResult, SyncHandle, SyncStatus
    from syncstore.workflows import Workflows


class Store(Replica):
    """A replica with typed APIs: ``store.tasks``, ``store.messages``,
    ``store.environments``, ``store.executions``, ``store.events``,
    ``store.memory``, ``store.workflows``."""

    @cached_property
    def tasks(self) -> Tasks:
        return Tasks(self)

    @cached_property
    def messages(self) -> Messages:
        return Messages(self)

    @cached_property
    def environments(self) -> Environments:
        return Environments(self)

    @cached_property
    def executions(self) -> Executions:
        from syncstore.executions import Executions

        return Executions(self)

    @cached_property
    def events(self) -> Events:
        from syncstore.events import Events

        return Events(self)

    @cached_property
    def memory(self) -> Memory:
        from syncstore.memory import Memory

        return Memory(self)

    @cached_property
    def workflows(self) -> Workflows:
        from syncstore.workflows import Workflows

        return Workflows(self)

    # --- sync (syncstore.sync, imported when first used) ---------------------

    def sync(self, url: str, *, token: str, timeout: float | None = 60.0, **options: Any) -> RoundResult:
        """One round with the sync server: push what is pending, pull until up to date."""
        from syncstore.sync import sync_once

        return sync_once(self, url, token=token, timeout=timeout, **options)

    def start_sync(self, url: str, *, token: str, **options: Any) -> SyncHandle:
        """Keep syncing in a background thread (reconnecting with backoff) until ``.stop()``."""
        from syncstore.sync import start_sync

        return start_sync(self, url, token=token, **options)

    def sync_status(self) -> SyncStatus:
        """Connected, pending changes, last acknowledged sequence, cursor, last error."""
        from syncstore.sync import sync_status

        return sync_status(self)


def open(path: str, **options: object) -> Store:  # noqa: A001 - mirrors builtins.open on purpose
    """Open (creating if needed) the replica at ``path``. Options are keyword-only:
    ``readonly``, ``busy_timeout_ms``, ``max_drift_ms``."""
    return Store(path, **options)  # type: ignore[arg-type]
