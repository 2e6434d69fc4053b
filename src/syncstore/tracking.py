"""One tracked agent run: the object behind ``store.executions.track(...)``.

    with store.executions.track("planner", task_id=task.id, input={"goal": goal}) as run:
        answer = call_model(...)
        run.usage(input_tokens=812, output_tokens=95, cost=0.0021, model="gpt-4o", provider="openai")
        run.output = {"plan": answer}

Entering inserts the execution as ``running``; leaving writes the outcome in
one update:

- the block finishes: ``completed`` with ``run.output``;
- an ``Exception`` escapes: ``failed``, with ``"Type: message"`` in ``error``
  and an error event carrying the stack and the run's correlation id;
- any other ``BaseException`` escapes (``KeyboardInterrupt``,
  ``asyncio.CancelledError``, ``SystemExit``, ``GeneratorExit``): ``cancelled``.

The exception always propagates. Usage and cost accumulate in memory and are
written at the end, so a process killed mid-run leaves the row ``running``
with what was known when it started: honest, and visible in the CLI.

The running :class:`Run` is kept in a context variable: events emitted inside
the block (``store.events.emit``) and OpenTelemetry spans started inside it
are linked to the execution without being told. Context variables follow
``await`` and ``asyncio`` tasks, not new threads; ``run.event(...)`` links
from anywhere.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from syncstore.executions import Execution, Executions
    from syncstore.store import Store

log = logging.getLogger("syncstore.executions")

_CURRENT: contextvars.ContextVar[Run | None] = contextvars.ContextVar("syncstore_run", default=None)


def current_run() -> Run | None:
    """The run whose block the caller is in, if any."""
    return _CURRENT.get()


def add_usage(total: dict[str, int], usage: dict[str, Any]) -> None:
    """Add token counts into ``total`` (keys as given; numbers only)."""
    for key, value in usage.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"token count {key} must be a non-negative integer, got {value!r}")
        total[key] = total.get(key, 0) + value


class Run:
    """A running execution; use it as a context manager (``with`` or ``async with``)."""

    def __init__(self, executions: Executions, agent_type: str, fields: dict[str, Any]):
        self._executions = executions
        self.store: Store = executions.store
        self.agent_type = agent_type
        self._fields = fields
        self.id: str = fields.get("id") or ""
        self.correlation_id: str | None = fields.get("correlation_id")
        self.trace_id: str | None = fields.get("trace_id")
        self.output: Any = None
        self.metadata: dict[str, Any] = dict(fields.get("metadata") or {})
        self.provider: str | None = fields.get("provider")
        self.model: str | None = fields.get("model")
        self.tokens: dict[str, int] = {}
        self.cost: float | None = None
        self.finished: Execution | None = None
        self._token: contextvars.Token[Run | None] | None = None
        self._started = 0.0

    # --- what the block reports ---------------------------------------------------

    def usage(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: float | None = None,
        model: str | None = None,
        provider: str | None = None,
        **other_tokens: int,
    ) -> None:
        """Add one model call's usage; counts and cost accumulate over the run."""
        add_usage(self.tokens, {"input_tokens": input_tokens, "output_tokens": output_tokens, **other_tokens})
        self.tokens["total_tokens"] = self.tokens["input_tokens"] + self.tokens["output_tokens"]
        if cost is not None:
            if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0:
                raise ValueError(f"cost must be a non-negative number, got {cost!r}")
            self.cost = (self.cost or 0.0) + float(cost)
        self.model = model or self.model
        self.provider = provider or self.provider

    def event(self, event_type: str, **fields: Any) -> None:
        """Emit an event linked to this run (from any thread)."""
        fields.setdefault("execution_id", self.id)
        fields.setdefault("correlation_id", self.correlation_id)
        fields.setdefault("trace_id", self.trace_id)
        self.store.events.emit(event_type, **fields)

    def fail(self, error: str | BaseException) -> Execution:
        """End the run as failed now (the block may go on; its end changes nothing)."""
        return self._finish("failed", error=error)

    def cancel(self, reason: str | None = None) -> Execution:
        """End the run as cancelled now."""
        return self._finish("cancelled", error=reason)

    # --- the context manager ------------------------------------------------------

    def __enter__(self) -> Run:
        self._begin()
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._token is not None:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # left in another context (a generator moved between tasks)
                _CURRENT.set(None)
            self._token = None
        self._end(exc)

    # The two writes, apart from the context variable, so that syncstore.aio can
    # make them in its worker thread while the variable is set in the caller's task.

    def _begin(self) -> None:
        """Insert the execution as running."""
        fields = dict(self._fields)
        fields.update(provider=self.provider, model=self.model, metadata=self.metadata)
        created = self._executions.create(self.agent_type, status="running", **fields)
        self.id = created.id
        self.correlation_id = created.correlation_id
        self.trace_id = created.trace_id
        self._started = time.perf_counter()

    def _end(self, exc: BaseException | None) -> None:
        """Record the outcome of the block (``exc``: what escaped it, if anything)."""
        if self.finished is not None:
            return
        if exc is None:
            self._finish("completed")
            return
        try:
            if isinstance(exc, Exception):
                self.store.events.error(
                    exc,
                    component=self.agent_type,
                    operation="execution",
                    execution_id=self.id,
                    correlation_id=getattr(exc, "correlation_id", None) or self.correlation_id,
                )
                self._finish("failed", error=exc)
            else:
                self._finish("cancelled", error=exc)
        except Exception:  # recording must not hide the error that ended the run
            log.exception("could not record the end of execution %s", self.id)

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def _finish(self, status: str, *, error: str | BaseException | None = None) -> Execution:
        if self.finished is not None:
            return self.finished
        if isinstance(error, BaseException):
            text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        else:
            text = error
        self.finished = self._executions.finish(
            self.id,
            status,
            output=self.output,
            error=text,
            token_usage=self.tokens or None,
            cost=self.cost,
            provider=self.provider,
            model=self.model,
            metadata=self.metadata or None,
            duration_ms=(time.perf_counter() - self._started) * 1000.0,
        )
        return self.finished


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of ``value``; what JSON cannot hold becomes its repr."""

    def fallback(obj: Any) -> Any:
        return repr(obj)[:1000]

    try:
        return msgspec.to_builtins(value, enc_hook=fallback, str_keys=True)
    except (TypeError, ValueError, msgspec.EncodeError):
        return repr(value)[:1000]

