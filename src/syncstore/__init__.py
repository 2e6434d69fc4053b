"""syncstore: an offline-first sync store for AI agents.

    import syncstore
    store = syncstore.open("agent.db")
    task = store.tasks.create("Summarise the logs")
    store.messages.add(task.id, "user", "focus on errors")
"""

from typing import Any

from syncstore.errors import (
    AuthError,
    CapabilityError,
    CircuitOpenError,
    ClockDriftError,
    ExternalServiceError,
    LeaseHeldError,
    LeaseLostError,
    NotAReplicaError,
    NotFoundError,
    PermanentStepError,
    ProtocolError,
    ReplicaError,
    ReplicaLockedError,
    SchemaVersionError,
    SyncAuthError,
    SyncClockDriftError,
    SyncError,
    SyncstoreError,
    TransitionError,
    ValidationError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowVersionError,
)
from syncstore.events import Event
from syncstore.executions import Execution
from syncstore.records import Environment, Task, TaskMessage
from syncstore.replica.store import Change
from syncstore.store import Store, open

__version__ = "0.1.0"

# Records of the memory and workflow packages, imported when first asked for:
# those packages take longer to import than the rest of syncstore together.
_LAZY = {
    "MemoryRecord": "syncstore.memory.records",
    "ExecutionRecord": "syncstore.workflows.records",
    "SnapshotRecord": "syncstore.workflows.records",
    "WorkflowRecord": "syncstore.workflows.records",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'syncstore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AuthError",
    "CapabilityError",
    "Change",
    "CircuitOpenError",
    "ClockDriftError",
    "Environment",
    "Event",
    "Execution",
    "ExecutionRecord",
    "ExternalServiceError",
    "LeaseHeldError",
    "LeaseLostError",
    "MemoryRecord",
    "NotAReplicaError",
    "NotFoundError",
    "PermanentStepError",
    "ProtocolError",
    "ReplicaError",
    "ReplicaLockedError",
    "SchemaVersionError",
    "SnapshotRecord",
    "Store",
    "SyncAuthError",
    "SyncClockDriftError",
    "SyncError",
    "SyncstoreError",
    "Task",
    "TaskMessage",
    "TransitionError",
    "ValidationError",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowRecord",
    "WorkflowVersionError",
    "open",
]
