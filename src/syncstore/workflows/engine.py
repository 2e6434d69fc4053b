"""The durable engine: start executions, run them, recover them after a crash.

``run(id)`` takes the execution's lease, loads what it recorded (each
finished step's output, failed attempts, waits begun, signals consumed) and
walks the pinned definition: recorded steps are replayed from their outputs,
the rest run live (see :mod:`syncstore.workflows.runner`). It returns when the
execution completes, fails, is paused or cancelled, or waits for a signal.

``recover()`` runs every execution in this store that should be running and
that no live process holds: ones a crash interrupted, ones resumed, ones whose
awaited signal (or deadline) has arrived, ones started but never run. Call it
when a process starts.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from collections import Counter
from typing import TYPE_CHECKING, Any, Iterator

import msgspec

from syncstore import schema
from syncstore.errors import LeaseHeldError, LeaseLostError, NotFoundError, WorkflowDefinitionError, WorkflowError
from syncstore.workflows import lease, records
from syncstore.workflows.catalog import Catalog
from syncstore.workflows.definition import Plan, WorkflowSpec
from syncstore.workflows.heartbeat import Heartbeat
from syncstore.workflows.records import TERMINAL, ExecutionRecord
from syncstore.workflows.registry import Registry
from syncstore.workflows.runner import Runner
from syncstore.workflows.snapshots import json_value, row
from syncstore.workflows.walker import Recorded

if TYPE_CHECKING:
    from syncstore.replica.store import Replica

log = logging.getLogger("syncstore.workflows")

RECORDED_SQL = (
    "select id, step_number, kind, output, state, timestamp from execution_snapshots "
    "where execution_id = ? and kind in ('step_end', 'error', 'step_start') order by timestamp, id"
)


def _json(text: str | None, default: Any = None) -> Any:
    return default if text is None else msgspec.json.decode(text)


class Engine:
    def __init__(self, store: Replica, *, registry: Registry, lease_seconds: float, owner: str):
        if not lease_seconds > 0:
            raise ValueError("lease_seconds must be positive")
        self.store = store
        self.registry = registry
        self.lease_seconds = lease_seconds
        self.owner = owner
        self.catalog = Catalog(store, registry)
        self.heartbeat = Heartbeat(self)
        # Executions this engine is running now, in any thread: our own lease does
        # not block us, so this is what stops a second thread running one of them.
        self._active: set[str] = set()
        self._active_lock = threading.Lock()

    @contextmanager
    def _running(self, execution_id: str, holder: str | None, expires: str | None) -> Iterator[None]:
        with self._active_lock:
            if execution_id in self._active:
                raise LeaseHeldError(execution_id, holder or self.owner, expires)
            self._active.add(execution_id)
        try:
            yield
        finally:
            with self._active_lock:
                self._active.discard(execution_id)

    # --- starting -------------------------------------------------------------

    def start(
        self,
        workflow: WorkflowSpec | str,
        *,
        version: int | None = None,
        input: Any = None,  # noqa: A002
        triggered_by: str | None = None,
        parent_execution_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        claim: bool = False,
    ) -> tuple[str, Plan, float]:
        """Create an execution (pending; or running under our lease with ``claim``)."""
        found, built = self.catalog.resolve(workflow, version)
        values: dict[str, Any] = {
            "workflow_id": found.id,
            "workflow_version": found.version,
            "input": json_value(input),
            "total_steps": built.total,
            "triggered_by": triggered_by,
            "parent_execution_id": parent_execution_id,
            "metadata": {**(metadata or {}), "definition_sha256": built.sha256},
        }
        until = 0.0
        if claim:
            until, stamp = lease.expiry(self.lease_seconds)
            values.update(
                status="running",
                lease_owner=self.owner,
                lease_expires_at=stamp,
                started_at=schema.now_iso(),
                current_step=1,
            )
        return self.store.insert("workflow_executions", values), built, until

    def execute(self, workflow: WorkflowSpec | str, **options: Any) -> ExecutionRecord:
        """Start and run in this thread; returns where the execution stopped."""
        self._check_functions(self.catalog.resolve(workflow, options.get("version"))[1])
        execution_id, built, until = self.start(workflow, claim=True, **options)  # resolves from the cache
        given = options.get("input")
        runner = Runner(
            self,
            execution_id,
            built,
            {},
            input=None if given is None else _json(schema.encode_json(given)),  # as a replay will read it
            attempts={},
            starts={},
            consumed=set(),
            lease_until=until,
        )
        runner.fresh = True  # just inserted under our lease: nothing to check before step 1
        with self._running(execution_id, None, None):
            runner.run()
        return self.get(execution_id)

    # --- running --------------------------------------------------------------

    def get(self, execution_id: str) -> ExecutionRecord:
        found = self.store.get("workflow_executions", execution_id)
        if found is None:
            raise NotFoundError("workflow_executions", execution_id)
        return records.execution(found)

    def _check_functions(self, built: Plan) -> None:
        missing = self.registry.missing(built.functions, built.predicates)
        if missing:
            raise WorkflowDefinitionError(
                f"this process cannot run the workflow: {', '.join(missing)} not registered "
                f"(import the module that defines them)"
            )

    def run(self, execution_id: str) -> ExecutionRecord:
        """Run (or resume) one execution until it stops; raises LeaseHeldError when
        another live process is running it."""
        found = self.store.get("workflow_executions", execution_id)
        if found is None:
            raise NotFoundError("workflow_executions", execution_id)
        if found["status"] in TERMINAL:
            return records.execution(found)
        metadata = _json(found["metadata"], {})
        built = self.catalog.pinned(found, metadata)
        self._check_functions(built)
        with self._running(execution_id, found["lease_owner"], found["lease_expires_at"]):
            return self._run_claimed(execution_id, built, metadata)

    def _run_claimed(self, execution_id: str, built: Plan, metadata: dict[str, Any]) -> ExecutionRecord:
        claimed = self._claim(execution_id)
        if claimed is None:
            return self.get(execution_id)
        found, until = claimed
        recorded, attempts, starts, consumed = self._load(execution_id, built)
        fork = metadata.get("fork") or {}
        runner = Runner(
            self,
            execution_id,
            built,
            recorded,
            input=_json(found["input"]),
            attempts=attempts,
            starts=starts,
            consumed=consumed,
            lease_until=until,
            patch_at=fork.get("from_step"),
            patch=fork.get("state"),
        )
        runner.run()
        return self.get(execution_id)

    def _claim(self, execution_id: str) -> tuple[dict[str, Any], float] | None:
        """Take the lease, or apply a pending pause/cancel; None: nothing to run."""
        store = self.store
        with store.transaction():
            found = store.get("workflow_executions", execution_id)
            if found is None:
                raise NotFoundError("workflow_executions", execution_id)
            status, requested = found["status"], found["requested_status"]
            if status in TERMINAL:
                return None
            if lease.live(found["lease_owner"], found["lease_expires_at"], me=self.owner):
                raise LeaseHeldError(execution_id, found["lease_owner"], found["lease_expires_at"])
            now = schema.now_iso()
            released = {"lease_owner": None, "lease_expires_at": None}
            if requested == "cancelled":
                store.update("workflow_executions", execution_id, {"status": "cancelled", "completed_at": now, **released})
                store.insert("execution_snapshots", row(execution_id, 0, "checkpoint", timestamp=now, metadata={"event": "cancelled"}))
                return None
            if requested == "paused":
                if status != "paused":
                    store.update("workflow_executions", execution_id, {"status": "paused", "paused_at": now, **released})
                    store.insert("execution_snapshots", row(execution_id, 0, "checkpoint", timestamp=now, metadata={"event": "paused"}))
                return None
            if status == "paused":
                return None  # paused, and nobody asked to resume
            until, stamp = lease.expiry(self.lease_seconds)
            changes: dict[str, Any] = {"status": "running", "lease_owner": self.owner, "lease_expires_at": stamp}
            if found["started_at"] is None:
                changes["started_at"] = now
            store.update("workflow_executions", execution_id, changes)
            if status != "pending":
                # Resuming after a crash, a pause or a wait: say so in the timeline.
                store.insert(
                    "execution_snapshots",
                    row(execution_id, 0, "checkpoint", timestamp=now, metadata={"event": "resumed", "from": status, "owner": self.owner}),
                )
        return found, until

    def _load(self, execution_id: str, built: Plan) -> tuple[dict[int, Recorded], dict[int, int], dict[int, str], set[str]]:
        recorded: dict[int, Recorded] = {}
        errors: Counter[int] = Counter()
        starts: dict[int, str] = {}
        for snapshot_id, number, kind, output, state, timestamp in self.store.connection.execute(RECORDED_SQL, (execution_id,)):
            if kind == "step_end":
                if number not in recorded:  # the first record of a step is the one that counts
                    recorded[number] = Recorded(_json(output), snapshot_id, state)
            elif kind == "error":
                errors[number] += 1
            else:
                starts.setdefault(number, timestamp)
        consumed = {
            rec.output["signal_id"]
            for number, rec in recorded.items()
            if isinstance(rec.output, dict) and "signal_id" in rec.output and 1 <= number <= built.total
        }
        return recorded, dict(errors), starts, consumed

    # --- recovering -----------------------------------------------------------

    def runnable(self) -> list[str]:
        """Executions that should be running and that no live process holds."""
        found = []
        now = lease.stamp(time.time())
        for candidate in self.store.query(
            "select id, status, requested_status, lease_owner, lease_expires_at, metadata "
            "from workflow_executions where status in ('pending', 'running', 'paused', 'waiting') "
            "order by created_at, id"
        ):
            if candidate["id"] in self._active:
                continue
            if lease.live(candidate["lease_owner"], candidate["lease_expires_at"], me=self.owner):
                continue
            status, requested = candidate["status"], candidate["requested_status"]
            if status == "paused" and requested not in ("running", "cancelled"):
                continue
            if status == "waiting" and requested not in ("paused", "cancelled"):
                if not self._wait_over(candidate, now):
                    continue
            found.append(candidate["id"])
        return found

    def _wait_over(self, candidate: dict[str, Any], now: str) -> bool:
        waiting = _json(candidate["metadata"], {}).get("waiting_for") or {}
        if waiting.get("deadline") is not None and waiting["deadline"] <= now:
            return True
        (count,) = self.store.connection.execute(
            "select count(*) from execution_snapshots where execution_id = ? and kind = 'signal' and step_name = ?",
            (candidate["id"], waiting.get("signal")),
        ).fetchone()
        return count > waiting.get("seen", 0)

    def recover(self) -> list[ExecutionRecord]:
        """Run every runnable execution this process can; returns where each stopped.
        Executions this process cannot run are left alone (and logged): another
        process holds them, their step functions are not registered here, or
        their definition has not arrived by sync yet."""
        done = []
        for execution_id in self.runnable():
            try:
                done.append(self.run(execution_id))
            except (LeaseHeldError, LeaseLostError) as exc:
                log.info("recover: skipping %s: %s", execution_id, exc)
            except WorkflowError as exc:
                log.warning("recover: cannot run %s here: %s", execution_id, exc)
        return done
