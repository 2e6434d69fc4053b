"""Pause, resume, cancel and signal: requests that work from any replica.

A request is a write to a synced place, never a call to the running process:

- pause/resume/cancel write ``requested_status``, a per-column last-write-wins
  field, so the latest request wins on every replica. The process running the
  execution reads it at every step boundary (and its heartbeat during long
  steps) and obeys there, whether the request was written on its own replica
  or arrived by sync.
- a signal is an append-only ``execution_snapshots`` row of kind ``signal``,
  so two replicas signalling at once never overwrite each other.

When nobody holds the execution's lease, the request also updates ``status``
at once (a paused or cancelled execution needs no running process to say so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncstore import schema
from syncstore.errors import NotFoundError, ValidationError, WorkflowError
from syncstore.workflows import lease, records
from syncstore.workflows.records import TERMINAL, ExecutionRecord, SnapshotRecord
from syncstore.workflows.snapshots import row

if TYPE_CHECKING:
    from syncstore.replica.store import Replica

DECISIONS = ("approve", "reject")


def _open(store: Replica, execution_id: str, action: str) -> dict[str, Any]:
    found = store.get("workflow_executions", execution_id)
    if found is None:
        raise NotFoundError("workflow_executions", execution_id)
    if found["status"] in TERMINAL:
        raise WorkflowError(f"cannot {action} execution {execution_id}: it is {found['status']}")
    return found


def _idle(found: dict[str, Any]) -> bool:
    return not lease.live(found["lease_owner"], found["lease_expires_at"])


def pause(store: Replica, execution_id: str) -> ExecutionRecord:
    """Ask the execution to stop at its next step boundary."""
    with store.transaction():
        found = _open(store, execution_id, "pause")
        changes: dict[str, Any] = {"requested_status": "paused"}
        if _idle(found) and found["status"] != "paused":
            now = schema.now_iso()
            changes.update(status="paused", paused_at=now, lease_owner=None, lease_expires_at=None)
            store.insert("execution_snapshots", row(execution_id, 0, "checkpoint", timestamp=now, metadata={"event": "paused"}))
        store.update("workflow_executions", execution_id, changes)
    return records.execution(store.get("workflow_executions", execution_id))  # type: ignore[arg-type]


def resume(store: Replica, execution_id: str) -> ExecutionRecord:
    """Let a paused execution go on; a process running ``recover()`` (or ``run(id)``) continues it."""
    with store.transaction():
        found = _open(store, execution_id, "resume")
        changes: dict[str, Any] = {"requested_status": "running"}
        if _idle(found) and found["status"] == "paused":
            changes["status"] = "pending"  # ready for whichever process runs it next
        store.update("workflow_executions", execution_id, changes)
    return records.execution(store.get("workflow_executions", execution_id))  # type: ignore[arg-type]


def cancel(store: Replica, execution_id: str) -> ExecutionRecord:
    """Stop the execution for good at its next step boundary (at once when idle)."""
    with store.transaction():
        found = _open(store, execution_id, "cancel")
        changes: dict[str, Any] = {"requested_status": "cancelled"}
        if _idle(found):
            now = schema.now_iso()
            changes.update(status="cancelled", completed_at=now, lease_owner=None, lease_expires_at=None)
            store.insert("execution_snapshots", row(execution_id, 0, "checkpoint", timestamp=now, metadata={"event": "cancelled"}))
        store.update("workflow_executions", execution_id, changes)
    return records.execution(store.get("workflow_executions", execution_id))  # type: ignore[arg-type]


def signal(
    store: Replica,
    execution_id: str,
    name: str,
    *,
    decision: str = "approve",
    data: Any = None,
    sent_by: str | None = None,
) -> SnapshotRecord:
    """Send ``approve`` or ``reject`` (with data) to a ``wait_for_signal`` step named ``name``.
    A signal sent before the execution reaches its wait is kept for it."""
    if decision not in DECISIONS:
        raise ValidationError(f"decision must be one of {', '.join(DECISIONS)}", field="decision")
    if not isinstance(name, str) or not name:
        raise ValidationError("a signal needs a name", field="name")
    with store.transaction():
        _open(store, execution_id, "signal")
        signal_id = store.insert(
            "execution_snapshots",
            row(
                execution_id,
                0,
                "signal",
                step_name=name,
                output={"decision": decision, "data": data},
                metadata={"sent_by": sent_by, "site": store.site_id.hex()},
            ),
        )
    return records.snapshot(store.get("execution_snapshots", signal_id))  # type: ignore[arg-type]
