"""Keeping leases alive during long steps, and noticing control requests meanwhile.

Boundaries renew a lease as a run goes, but a single step can outlast it. One
daemon thread per engine wakes every third of the lease, renews the lease of
every run it watches when a third of it is gone, and raises the run's
``stop_flag`` when a pause or cancel has been requested (a step can read that
as ``ctx.stop_requested``). The thread exits when it has nothing to watch.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from syncstore.errors import SyncstoreError
from syncstore.workflows import lease
from syncstore.workflows.runner import CONTROL_SQL, STOP_REQUESTS

if TYPE_CHECKING:
    from syncstore.workflows.engine import Engine
    from syncstore.workflows.runner import Runner

log = logging.getLogger("syncstore.workflows")


class Heartbeat:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.interval = max(0.05, engine.lease_seconds / 3)
        self._runs: set[Runner] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, run: Runner) -> None:
        with self._lock:
            self._runs.add(run)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="syncstore-lease-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, run: Runner) -> None:
        with self._lock:
            self._runs.discard(run)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                runs = list(self._runs)
                if not runs:
                    self._thread = None
                    return
            for run in runs:
                try:
                    self.beat(run)
                except SyncstoreError:
                    log.exception("renewing the lease of execution %s failed", run.eid)

    def beat(self, run: Runner) -> None:
        store = self.engine.store
        with store.transaction():
            found = store.connection.execute(CONTROL_SQL, (run.eid,)).fetchone()
            if found is None or found[0] != run.owner:
                run.halt.set()  # lost: the run finds out for sure at its next boundary
                run.stop_flag.set()
                return
            if found[1] in STOP_REQUESTS:
                run.stop_flag.set()
            if run.lease_until - time.time() < self.engine.lease_seconds * 2 / 3:
                run.lease_until, until = lease.expiry(self.engine.lease_seconds)
                store.update("workflow_executions", run.eid, {"lease_expires_at": until})
