"""Agent executions: one row per agent run, with a validated status machine.

    pending ──> running ──> completed
       │           ├──────> failed
       │           └──────> cancelled
       └──> cancelled / failed          (never started)

``completed``, ``failed`` and ``cancelled`` are final. The usual way in is
:meth:`Executions.track` (a context manager, see :mod:`syncstore.tracking`) or
:meth:`Executions.tracked` (a decorator for plain and ``async`` functions);
the explicit steps (:meth:`~Executions.create`, :meth:`~Executions.start`,
:meth:`~Executions.complete`, :meth:`~Executions.fail`,
:meth:`~Executions.cancel`) are there for runs driven from outside.

Transitions are checked against this replica's current row, inside one
transaction. Two replicas that end the same run differently while offline are
merged per column by the sync rule like any other edit.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import sys
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import msgspec

from syncstore import schema
from syncstore._crud import TableAPI
from syncstore.core.ids import uuid7
from syncstore.errors import NotFoundError, TransitionError, ValidationError
from syncstore.tracking import Run, current_run, jsonable

if TYPE_CHECKING:
    from syncstore.events import Event
    from syncstore.metrics import GroupStats

F = TypeVar("F", bound=Callable[..., Any])

TABLE = "agent_executions"
STATUSES = schema.EXECUTION_STATUSES
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending": ("running", "cancelled", "failed"),
    "running": ("completed", "failed", "cancelled"),
    "completed": (),
    "failed": (),
    "cancelled": (),
}
FINAL = ("completed", "failed", "cancelled")
assert set(TRANSITIONS) == set(STATUSES)


class Execution(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``agent_executions``."""

    id: str
    task_id: str | None = None
    agent_type: str
    status: str = "pending"
    input: Any = None
    output: Any = None
    error: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    duration_ms: float | None = None
    token_usage: dict[str, Any] | None = None
    cost: float | None = None
    provider: str | None = None
    model: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    correlation_id: str | None = None
    metadata: dict[str, Any] = {}
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


def as_json_value(value: Any, *, field: str) -> str | None:
    """A Python value for a JSON column, as JSON text (so a plain string is
    kept as a JSON string rather than read as JSON text)."""
    if value is None:
        return None
    try:
        return schema.encode_json(value)
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"not JSON-ready: {exc}", table=TABLE, field=field) from None


def otel_ids() -> tuple[str | None, str | None]:
    """The current OpenTelemetry span's trace and span ids as hex, when
    OpenTelemetry is in use in this process (it is never imported here)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None, None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


class Executions(TableAPI[Execution]):
    """``store.executions``."""

    table = TABLE
    record = Execution

    # --- explicit steps -------------------------------------------------------------

    def create(
        self,
        agent_type: str,
        *,
        task_id: str | None = None,
        input: Any = None,
        status: str = "pending",
        provider: str | None = None,
        model: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        correlation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        started_at: dt.datetime | str | None = None,
        id: str | None = None,
    ) -> Execution:
        """Record a new execution, ``pending`` or already ``running``.

        Left out, the correlation id is the enclosing run's (a nested run joins
        its parent's operation) or else the new execution's own id, and the
        trace and span ids are the current OpenTelemetry span's. A nested run
        notes its parent in ``metadata["parent_execution_id"]``.
        """
        if status not in ("pending", "running"):
            raise ValidationError(f"a new execution is pending or running, not {status!r}", table=TABLE, field="status")
        if not isinstance(agent_type, str) or not agent_type.strip():
            raise ValidationError("must not be empty", table=TABLE, field="agent_type")
        row_id = id or uuid7()
        parent = current_run()
        if parent is not None and parent.store is not self.store:
            parent = None
        meta = dict(metadata or {})
        if parent is not None:
            meta.setdefault("parent_execution_id", parent.id)
        if trace_id is None and span_id is None:
            trace_id, span_id = otel_ids()
        if status == "running" and started_at is None:
            started_at = schema.now_iso()
        # Written and read back under the store's lock: spans may end on any thread.
        values = dict(
            id=row_id,
            agent_type=agent_type,
            task_id=task_id,
            status=status,
            input=as_json_value(input, field="input"),
            provider=provider,
            model=model,
            trace_id=trace_id or (parent.trace_id if parent else None),
            span_id=span_id,
            correlation_id=correlation_id or (parent.correlation_id if parent else None) or row_id,
            metadata=meta,
            started_at=started_at,
        )
        # Written and read back under the store's lock: spans may end on any thread.
        with self.store.transaction():
            return self._create(values)

    def transition(self, execution_id: str, status: str, **fields: Any) -> Execution:
        """Move an execution to ``status`` (checked against :data:`TRANSITIONS`)
        and write ``fields`` with it, atomically."""
        if status not in TRANSITIONS:
            raise ValidationError(f"{status!r} is not one of {', '.join(STATUSES)}", table=TABLE, field="status")
        with self.store.transaction():
            row = self.store.get(TABLE, execution_id)
            if row is None:
                raise NotFoundError(TABLE, execution_id)
            current = row["status"]
            allowed = TRANSITIONS.get(current, ())
            if status not in allowed:
                raise TransitionError(table=TABLE, row_id=execution_id, current=current, requested=status, allowed=allowed)
            changes = {k: v for k, v in fields.items() if v is not None}
            for name in ("input", "output", "token_usage", "metadata"):
                if name in changes:
                    changes[name] = as_json_value(changes[name], field=name)
            changes["status"] = status
            now = schema.now_iso()
            if status == "running":
                changes.setdefault("started_at", now)
            if status in FINAL:
                changes.setdefault("completed_at", now)
                if changes.get("duration_ms") is None and row["started_at"] is not None:
                    ended = changes["completed_at"]
                    if not isinstance(ended, dt.datetime):
                        ended = schema.parse_timestamp(ended)
                    elapsed = ended - schema.parse_timestamp(row["started_at"])
                    changes["duration_ms"] = max(0.0, elapsed.total_seconds() * 1000.0)
            self.store.update(TABLE, execution_id, changes)
            return self.get(execution_id)

    def start(self, execution_id: str) -> Execution:
        """``pending`` -> ``running``."""
        return self.transition(execution_id, "running")

    def finish(self, execution_id: str, status: str, **fields: Any) -> Execution:
        """End a run: ``status`` is completed, failed or cancelled."""
        if status not in FINAL:
            raise ValidationError(f"a run ends completed, failed or cancelled, not {status!r}", table=TABLE, field="status")
        return self.transition(execution_id, status, **fields)

    def complete(self, execution_id: str, *, output: Any = None, **fields: Any) -> Execution:
        return self.finish(execution_id, "completed", output=output, **fields)

    def fail(self, execution_id: str, error: str, **fields: Any) -> Execution:
        return self.finish(execution_id, "failed", error=error, **fields)

    def cancel(self, execution_id: str, reason: str | None = None, **fields: Any) -> Execution:
        return self.finish(execution_id, "cancelled", error=reason, **fields)

    def update(self, row_id: str, **changes: Any) -> Execution:
        """Change fields; a status change goes through :meth:`transition`."""
        if "status" in changes:
            status = changes.pop("status")
            return self.transition(row_id, status, **changes)
        for name in ("input", "output", "token_usage", "metadata"):
            if changes.get(name) is not None:
                changes[name] = as_json_value(changes[name], field=name)
        return super().update(row_id, **changes)

    # --- tracking -------------------------------------------------------------------

    def track(self, agent_type: str, **fields: Any) -> Run:
        """A context manager that records one run (see :mod:`syncstore.tracking`).
        ``fields`` as for :meth:`create`: ``task_id``, ``input``, ``provider``,
        ``model``, ``trace_id``, ``span_id``, ``correlation_id``, ``metadata``, ``id``."""
        return Run(self, agent_type, fields)

    def tracked(
        self,
        agent_type: str | Callable[..., Any] | None = None,
        *,
        capture_input: bool = True,
        capture_output: bool = True,
        **fields: Any,
    ) -> Any:
        """Decorate a function (plain or ``async``) so each call is a tracked run.

        The agent type defaults to the function's qualified name. The call's
        arguments are the input and its return value the output, both made
        JSON-ready (what JSON cannot hold is kept as its repr); turn either off
        for data that must not be stored. Usable bare (``@tracked``) or called.
        """
        if callable(agent_type):
            return self.tracked()(agent_type)

        def decorate(fn: F) -> F:
            name = agent_type or fn.__qualname__
            signature = inspect.signature(fn)

            def input_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if not capture_input:
                    return None
                bound = signature.bind_partial(*args, **kwargs)
                return jsonable({k: v for k, v in bound.arguments.items() if k not in ("self", "cls")})

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    with self.track(name, input=input_of(args, kwargs), **fields) as run:
                        result = await fn(*args, **kwargs)
                        if capture_output and run.output is None:
                            run.output = jsonable(result)
                        return result

                return run_async  # type: ignore[return-value]

            @functools.wraps(fn)
            def run_sync(*args: Any, **kwargs: Any) -> Any:
                with self.track(name, input=input_of(args, kwargs), **fields) as run:
                    result = fn(*args, **kwargs)
                    if capture_output and run.output is None:
                        run.output = jsonable(result)
                    return result

            return run_sync  # type: ignore[return-value]

        return decorate

    def current(self) -> Run | None:
        """The run of this store whose block the caller is in, if any."""
        run = current_run()
        return run if run is not None and run.store is self.store else None

    # --- reading --------------------------------------------------------------------

    def events(self, execution_id: str) -> list[Event]:
        """The execution's events in time order."""
        return self.store.events.for_execution(execution_id)

    def rows_between(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Stored rows that started (or, never started, were created) in ``[since, until)``."""
        clauses, params = [], []
        if since is not None:
            clauses.append("coalesce(started_at, created_at) >= ?")
            params.append(schema.format_timestamp(since))
        if until is not None:
            clauses.append("coalesce(started_at, created_at) < ?")
            params.append(schema.format_timestamp(until))
        where = f" where {' and '.join(clauses)}" if clauses else ""
        return self.store.query(f"select * from {TABLE}{where}", params)

    def stats(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        by: tuple[str, ...] = ("agent_type",),
    ) -> list[GroupStats]:
        """Counts, error rate, duration percentiles, tokens and cost per group
        (see :mod:`syncstore.metrics`)."""
        from syncstore import metrics

        return metrics.execution_stats(self.rows_between(since=since, until=until), by=by)
