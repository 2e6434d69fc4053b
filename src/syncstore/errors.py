"""Every error syncstore raises, in one tree.

    SyncstoreError
    ├── ValidationError            a value does not fit the schema (field, problem)
    ├── NotFoundError              no such row (table, row_id)
    ├── ClockDriftError            a clock stamp too far in the future
    ├── ReplicaError               the replica file cannot be used
    │   ├── ReplicaLockedError     another process holds the lock too long
    │   ├── NotAReplicaError       the file is not a syncstore replica / not SQLite
    │   └── SchemaVersionError     made by a newer library, or a bad migration step
    ├── CapabilityError            an optional feature is unavailable here
    ├── ProtocolError              a malformed or unexpected sync message (code)
    ├── AuthError                  a missing, expired or forged token
    ├── SyncError                  the sync connection failed (retryable)
    ├── ExternalServiceError       an HTTP service (e.g. an embedder) failed
    │   └── CircuitOpenError       calls refused while a circuit breaker is open
    └── WorkflowError              a workflow definition or run cannot proceed
        ├── WorkflowDefinitionError    a definition or condition expression is invalid
        ├── WorkflowVersionError       a changed definition under an existing version
        ├── LeaseHeldError             another owner is running the execution
        ├── LeaseLostError             this owner's lease was taken over mid-run
        └── PermanentStepError         raised by a step: fail now, do not retry

Errors from the libraries underneath (apsw, psycopg, websockets, httpx) are
converted to these at the boundary, so callers catch one root.
"""

from __future__ import annotations


class SyncstoreError(Exception):
    """Root of every syncstore error."""


class ValidationError(SyncstoreError, ValueError):
    def __init__(self, message: str, *, table: str | None = None, field: str | None = None):
        self.table = table
        self.field = field
        where = ".".join(p for p in (table, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class NotFoundError(SyncstoreError, LookupError):
    def __init__(self, table: str, row_id: str):
        self.table = table
        self.row_id = row_id
        super().__init__(f"{table}: no row with id {row_id!r}")


class ClockDriftError(SyncstoreError):
    def __init__(self, *, stamp_ms: int, now_ms: int, max_drift_ms: int):
        self.stamp_ms = stamp_ms
        self.now_ms = now_ms
        self.max_drift_ms = max_drift_ms
        super().__init__(
            f"clock stamp is {stamp_ms - now_ms} ms in the future "
            f"(the limit is {max_drift_ms} ms): the sender's clock is wrong"
        )


class ReplicaError(SyncstoreError):
    """The replica file cannot be opened or used."""


class ReplicaLockedError(ReplicaError):
    pass


class NotAReplicaError(ReplicaError):
    pass


class SchemaVersionError(ReplicaError):
    pass


class CapabilityError(SyncstoreError):
    pass


class ProtocolError(SyncstoreError):
    def __init__(self, message: str, *, code: str = "protocol"):
        self.code = code
        super().__init__(message)


class AuthError(SyncstoreError):
    pass


class SyncError(SyncstoreError):
    pass


class ExternalServiceError(SyncstoreError):
    def __init__(self, message: str, *, service: str | None = None, status: int | None = None):
        self.service = service
        self.status = status
        super().__init__(message)


class CircuitOpenError(ExternalServiceError):
    pass


class WorkflowError(SyncstoreError):
    pass


class WorkflowDefinitionError(WorkflowError, ValueError):
    code = "workflow_definition"


class WorkflowVersionError(WorkflowError):
    code = "workflow_version"

    def __init__(self, name: str, version: int):
        self.name = name
        self.version = version
        super().__init__(
            f"workflow {name!r} version {version} is already registered with a different "
            f"definition; give the changed definition a new version"
        )


class LeaseHeldError(WorkflowError):
    code = "lease_held"
    retryable = True  # the lease ends when its owner stops or dies

    def __init__(self, execution_id: str, owner: str, expires_at: str | None):
        self.execution_id = execution_id
        self.owner = owner
        self.expires_at = expires_at
        super().__init__(f"execution {execution_id} is being run by {owner} (lease until {expires_at})")


class LeaseLostError(WorkflowError):
    code = "lease_lost"

    def __init__(self, execution_id: str, owner: str | None):
        self.execution_id = execution_id
        self.owner = owner
        super().__init__(f"execution {execution_id}: the lease was taken over by {owner or 'nobody'}; stopped")


class PermanentStepError(WorkflowError):
    """Raise from a step function to fail the step at once, without retries."""

    code = "permanent_step_error"
