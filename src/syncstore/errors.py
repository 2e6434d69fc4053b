"""Every error syncstore raises, in one tree.

    SyncstoreError
    ├── ValidationError            a value does not fit the schema (field, problem)
    │   └── TransitionError        a status change the state machine forbids
    ├── NotFoundError              no such row (table, row_id)
    ├── ClockDriftError            a clock stamp too far in the future
    │   └── SyncClockDriftError    (also a SyncError) pushes wait: the replica's clock is ahead
    ├── ReplicaError               the replica file cannot be used
    │   ├── ReplicaLockedError     another process holds the lock too long
    │   ├── NotAReplicaError       the file is not a syncstore replica / not SQLite
    │   └── SchemaVersionError     made by a newer library, or a bad migration step
    ├── CapabilityError            an optional feature is unavailable here
    ├── ProtocolError              a malformed or unexpected sync message (code)
    ├── AuthError                  a missing, expired or forged token
    │   └── SyncAuthError          (also a SyncError) the sync server refused the token
    ├── SyncError                  the sync connection failed (retryable unless marked)
    │   ├── SyncAuthError          the token was refused: the AuthError above
    │   └── SyncClockDriftError    pushes wait for the server's time: the ClockDriftError above
    ├── ExternalServiceError       an HTTP service (e.g. an embedder) failed
    │   └── CircuitOpenError       calls refused while a circuit breaker is open
    └── WorkflowError              a workflow definition or run cannot proceed
        ├── WorkflowDefinitionError    a definition or condition expression is invalid
        ├── WorkflowVersionError       a changed definition under an existing version
        ├── LeaseHeldError             another owner is running the execution
        ├── LeaseLostError             this owner's lease was taken over mid-run
        └── PermanentStepError         raised by a step: fail now, do not retry

Errors from the libraries underneath (apsw, psycopg, websockets, httpx) are
converted to these at the boundary, so callers catch one root. The sync client
(``store.sync()``) raises only :class:`SyncError` and its subclasses; the two
that are also something else keep old ``except AuthError`` / ``except
ClockDriftError`` handlers working.

Every error carries structured fields beside its message: ``code`` (a stable
name, recorded as an event's ``error_code``), ``retryable`` (whether trying the
same thing again may succeed) and ``correlation_id`` (set by whoever raises or
records it, to tie the error to the events of one operation); subclasses add
their own (``table``, ``field``, ``service``, ``status``, ...).
"""

from __future__ import annotations


class SyncstoreError(Exception):
    """Root of every syncstore error."""

    code: str = "syncstore"
    retryable: bool = False
    correlation_id: str | None = None


class ValidationError(SyncstoreError, ValueError):
    code = "validation"

    def __init__(self, message: str, *, table: str | None = None, field: str | None = None):
        self.table = table
        self.field = field
        where = ".".join(p for p in (table, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class NotFoundError(SyncstoreError, LookupError):
    code = "not_found"

    def __init__(self, table: str, row_id: str):
        self.table = table
        self.row_id = row_id
        super().__init__(f"{table}: no row with id {row_id!r}")


class ClockDriftError(SyncstoreError):
    code = "clock_drift"

    def __init__(self, *, stamp_ms: int, now_ms: int, max_drift_ms: int, message: str | None = None):
        self.stamp_ms = stamp_ms
        self.now_ms = now_ms
        self.max_drift_ms = max_drift_ms
        super().__init__(
            message
            or f"clock stamp is {stamp_ms - now_ms} ms in the future "
            f"(the limit is {max_drift_ms} ms): the sender's clock is wrong"
        )

    @property
    def ahead_ms(self) -> int:
        """How far the stamp is ahead of the time it was checked against."""
        return self.stamp_ms - self.now_ms


class ReplicaError(SyncstoreError):
    """The replica file cannot be opened or used."""

    code = "replica"


class ReplicaLockedError(ReplicaError):
    code = "replica_locked"
    retryable = True  # the other writer finishes sooner or later


class NotAReplicaError(ReplicaError):
    code = "not_a_replica"


class SchemaVersionError(ReplicaError):
    code = "schema_version"


class CapabilityError(SyncstoreError):
    code = "capability"


class ProtocolError(SyncstoreError):
    def __init__(self, message: str, *, code: str = "protocol"):
        self.code = code
        super().__init__(message)


class AuthError(SyncstoreError):
    code = "auth"


class SyncError(SyncstoreError):
    code = "sync"
    retryable = True
    retry_after: float | None = None  # seconds the server asked the client to wait, if it said


class SyncAuthError(SyncError, AuthError):
    """The sync server refused the token (missing, forged, expired, revoked, or
    lacking the scope): no retry with the same token can succeed."""

    code = "auth"
    retryable = False


class SyncClockDriftError(SyncError, ClockDriftError):
    """Local changes are stamped further ahead of the sync server's time than
    it accepts; they wait in the change log until its time catches up (or are
    re-stamped, see :func:`syncstore.sync.restamp_pending`). Retryable."""

    code = "clock_drift"
    retryable = True


class ExternalServiceError(SyncstoreError):
    code = "external_service"

    def __init__(self, message: str, *, service: str | None = None, status: int | None = None):
        self.service = service
        self.status = status
        # No status (the call never got an answer), a 5xx or a 429: worth another try.
        self.retryable = status is None or status >= 500 or status == 429
        super().__init__(message)


class CircuitOpenError(ExternalServiceError):
    code = "circuit_open"

    def __init__(self, message: str, *, service: str | None = None, retry_after: float | None = None):
        super().__init__(message, service=service)
        self.retry_after = retry_after  # seconds until the breaker lets a trial call through


class WorkflowError(SyncstoreError):
    code = "workflow"


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


class TransitionError(ValidationError):
    """A status change that the table's state machine does not allow."""

    code = "invalid_transition"

    def __init__(self, *, table: str, row_id: str, current: str, requested: str, allowed: tuple[str, ...]):
        self.row_id = row_id
        self.current = current
        self.requested = requested
        self.allowed = allowed
        then = ", ".join(allowed) if allowed else "nothing (it is final)"
        super().__init__(f"{row_id}: cannot go from {current} to {requested}; {current} may go to {then}", table=table, field="status")
