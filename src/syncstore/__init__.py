"""syncstore: an offline-first sync store for AI agents.

    import syncstore
    store = syncstore.open("agent.db")
    task = store.tasks.create("Summarise the logs")
    store.messages.add(task.id, "user", "focus on errors")
"""

from syncstore.errors import (
    AuthError,
    CapabilityError,
    CircuitOpenError,
    ClockDriftError,
    ExternalServiceError,
    NotAReplicaError,
    NotFoundError,
    ProtocolError,
    ReplicaError,
    ReplicaLockedError,
    SchemaVersionError,
    SyncError,
    SyncstoreError,
    ValidationError,
    WorkflowError,
)
from syncstore.records import Environment, Task, TaskMessage
from syncstore.replica.store import Change
from syncstore.store import Store, open

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "CapabilityError",
    "Change",
    "CircuitOpenError",
    "ClockDriftError",
    "Environment",
    "ExternalServiceError",
    "NotAReplicaError",
    "NotFoundError",
    "ProtocolError",
    "ReplicaError",
    "ReplicaLockedError",
    "SchemaVersionError",
    "Store",
    "SyncError",
    "SyncstoreError",
    "Task",
    "TaskMessage",
    "ValidationError",
    "WorkflowError",
    "open",
]
