"""OpenTelemetry into the store: finished spans become events, agent spans
become executions. Needs the ``otel`` extra (``opentelemetry-sdk``).

    from opentelemetry.sdk.trace import TracerProvider
    from syncstore.otel import SyncstoreSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SyncstoreSpanProcessor(store))

Tracing backends lose spans while they are unreachable; this processor writes
into the local replica, which syncs when it can, so an agent working offline
keeps its traces. Stored spans can be sent to any collector later as OTLP
JSON (:mod:`syncstore.otlp`).

What is recorded:

- every finished span: one ``observability_events`` row of type ``span``
  (see :func:`span_event` for the mapping). ``data`` keeps everything OTLP
  needs (attributes, events, links, status, resource, scope, nanosecond
  times), so the export loses nothing;
- every agent span (GenAI semantic conventions: ``gen_ai.operation.name`` is
  ``invoke_agent``, or the span name starts with ``invoke_agent``): one
  ``agent_executions`` row, inserted ``running`` when the span starts and
  ended when it ends: ``failed`` for an ERROR status, ``cancelled`` when the
  span ends while ``KeyboardInterrupt`` / ``asyncio.CancelledError`` is
  propagating (or its recorded exception is one of those), ``completed``
  otherwise. ``agent_type`` is ``gen_ai.agent.name``; provider, model and
  ``gen_ai.usage.input_tokens`` / ``output_tokens`` are taken from the span,
  or summed over its descendants when the agent span carries none;
- spans under an agent span, or started inside ``store.executions.track()``,
  are linked to that execution (``execution_id``) and share its correlation id.

The linking needs ``on_start``, so register this as a span processor (not an
exporter behind a batch processor). Its own cost per span is an in-memory
append; rows are written by the store's batched event writer.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, Mapping

import msgspec
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import StatusCode

from syncstore.tracking import add_usage, current_run

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource

    from syncstore.store import Store

log = logging.getLogger("syncstore.otel")

AGENT_OPERATIONS = ("invoke_agent",)
SPAN_EVENT = "span"
_CANCELLED = frozenset(("CancelledError", "KeyboardInterrupt"))  # exception type names, without module


def _hex_trace(value: int) -> str:
    return f"{value:032x}"


def _hex_span(value: int) -> str:
    return f"{value:016x}"


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """OTel attribute values as JSON values (sequences become lists)."""
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        out[key] = list(value) if isinstance(value, (tuple, list)) else value
    return out


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _ns_to_datetime(ns: int) -> dt.datetime:
    # Exact to the microsecond (what is stored); a float of seconds is not.
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def _flags(parent: Any) -> int:
    # As the OTLP exporters set them: "has is-remote" always, "is remote" when so.
    flags = 0x100
    if parent is not None and parent.is_remote:
        flags |= 0x200
    return flags


def _first(attributes: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = attributes.get(name)
        if value not in (None, ""):
            return value
    return None


def span_data(span: ReadableSpan, *, include_resource: bool = True) -> dict[str, Any]:
    """Everything OTLP needs about a finished span, as JSON-ready values."""
    ctx = span.get_span_context()
    data: dict[str, Any] = {
        "name": span.name,
        "kind": span.kind.name,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "flags": _flags(span.parent),
        "attributes": _plain(span.attributes),
        "status": {"code": span.status.status_code.name, "message": span.status.description},
        "scope": None,
    }
    if ctx.trace_state:
        data["trace_state"] = ",".join(f"{k}={v}" for k, v in ctx.trace_state.items())
    if span.events:
        data["events"] = [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": _plain(e.attributes), "dropped_attributes_count": e.dropped_attributes}
            for e in span.events
        ]
    if span.links:
        data["links"] = [
            {
                "trace_id": _hex_trace(link.context.trace_id),
                "span_id": _hex_span(link.context.span_id),
                "trace_state": ",".join(f"{k}={v}" for k, v in link.context.trace_state.items()) if link.context.trace_state else "",
                "attributes": _plain(link.attributes),
                "dropped_attributes_count": link.dropped_attributes,
                "flags": _flags(link.context),
            }
            for link in span.links
        ]
    dropped = {"attributes": span.dropped_attributes, "events": span.dropped_events, "links": span.dropped_links}
    if any(dropped.values()):
        data["dropped"] = dropped
    scope = span.instrumentation_scope
    if scope is not None:
        data["scope"] = {
            "name": scope.name,
            "version": scope.version,
            "schema_url": scope.schema_url,
            "attributes": _plain(getattr(scope, "attributes", None)),
        }
    if include_resource and span.resource is not None:
        resource: Resource = span.resource
        data["resource"] = {"attributes": _plain(resource.attributes), "schema_url": resource.schema_url}
    return data


def _agent_name(span_name: str, attributes: Mapping[str, Any]) -> str:
    """``gen_ai.agent.name``, else the name in "invoke_agent {name}", else the span name."""
    named = _first(attributes, "gen_ai.agent.name")
    if named:
        return str(named)
    operation, _, rest = span_name.partition(" ")
    return rest.strip() if operation in AGENT_OPERATIONS and rest.strip() else span_name


def _messages(value: Any) -> Any:
    """``gen_ai.input.messages`` / ``output.messages`` (JSON text, opt-in) as a value."""
    if not isinstance(value, str):
        return None
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError:
        return {"text": value}


def _exception_of(span: ReadableSpan) -> Mapping[str, Any] | None:
    for event in reversed(span.events):
        if event.name == "exception":
            return event.attributes or {}
    return None


def span_event(span: ReadableSpan, *, include_resource: bool = True) -> dict[str, Any]:
    """The ``store.events.emit`` arguments for a finished span.

    ``component`` is the first of ``syncstore.component``, ``gen_ai.agent.name``,
    ``gen_ai.tool.name``, ``gen_ai.provider.name``, ``gen_ai.system``, the
    instrumentation scope's name, the resource's ``service.name``;
    ``operation`` is ``gen_ai.operation.name`` or else the span name. An
    ERROR status makes the event an ``error``; an ``exception`` span event
    fills the error code, message and stack (``error.type`` also gives the code).
    """
    attrs = span.attributes or {}
    ctx = span.get_span_context()
    exception = _exception_of(span)
    status = span.status
    failed = status.status_code is StatusCode.ERROR
    scope_name = span.instrumentation_scope.name if span.instrumentation_scope else None
    service = span.resource.attributes.get("service.name") if span.resource is not None else None
    error_code = _first(attrs, "error.type")
    error_message = status.description if failed else None
    error_stack = None
    if exception is not None:
        # The exception's own message: the SDK's status description repeats the type.
        error_code = error_code or exception.get("exception.type")
        error_message = exception.get("exception.message") or error_message
        error_stack = exception.get("exception.stacktrace")
    return dict(
        severity="error" if failed else "info",
        component=_first(attrs, "syncstore.component", "gen_ai.agent.name", "gen_ai.tool.name", "gen_ai.provider.name", "gen_ai.system")
        or scope_name
        or service,
        operation=_first(attrs, "gen_ai.operation.name") or span.name,
        duration_ms=max(0, (span.end_time or span.start_time) - span.start_time) / 1e6,
        trace_id=_hex_trace(ctx.trace_id),
        span_id=_hex_span(ctx.span_id),
        parent_span_id=_hex_span(span.parent.span_id) if span.parent is not None else None,
        correlation_id=_first(attrs, "syncstore.correlation_id"),
        error_code=str(error_code) if error_code is not None else None,
        error_message=str(error_message) if error_message is not None else None,
        error_stack=str(error_stack) if error_stack is not None else None,
        data=span_data(span, include_resource=include_resource),
        timestamp=span.start_time,
    )


def span_usage(attributes: Mapping[str, Any]) -> tuple[dict[str, int], float | None]:
    """Token counts (GenAI conventions) and cost (``syncstore.cost``) on one span."""
    usage = {}
    for key in ("input_tokens", "output_tokens"):
        value = attributes.get(f"gen_ai.usage.{key}")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            usage[key] = value
    cost = attributes.get("syncstore.cost")
    return usage, (float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0 else None)


class _Agent:
    """What the processor knows about one open agent span and its execution."""

    __slots__ = ("execution_id", "correlation_id", "tokens", "cost", "model", "provider")

    def __init__(self, execution_id: str, correlation_id: str | None):
        self.execution_id = execution_id
        self.correlation_id = correlation_id
        self.tokens: dict[str, int] = {}
        self.cost: float | None = None
        self.model: str | None = None
        self.provider: str | None = None


class SyncstoreSpanProcessor(SpanProcessor):
    """Writes finished spans into ``store`` as events, agent spans as executions."""

    def __init__(
        self,
        store: Store,
        *,
        agent_operations: tuple[str, ...] = AGENT_OPERATIONS,
        record_executions: bool = True,
        include_resource: bool = True,
    ):
        self.store = store
        self.agent_operations = agent_operations
        self.record_executions = record_executions
        self.include_resource = include_resource
        self._lock = threading.Lock()
        self._agents: dict[int, _Agent] = {}  # agent span id -> its execution
        self._links: dict[int, _Agent] = {}  # open span id -> the execution it belongs to
        self._runs: dict[int, tuple[str, str | None]] = {}  # open span id -> a track() run's (id, correlation)

    def _is_agent(self, span: ReadableSpan) -> bool:
        operation = (span.attributes or {}).get("gen_ai.operation.name")
        if operation is not None:
            return operation in self.agent_operations
        return any(span.name == op or span.name.startswith(op + " ") for op in self.agent_operations)

    # --- SpanProcessor ----------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            self._start(span)
        except Exception:  # a processor must never break the traced code
            log.exception("could not record the start of span %r", span.name)

    def _start(self, span: Span) -> None:
        span_id = span.get_span_context().span_id
        parent = span.parent
        with self._lock:
            owner = self._links.get(parent.span_id) if parent is not None else None
            run = self._runs.get(parent.span_id) if parent is not None else None
        if run is None and owner is None:
            current = current_run()
            if current is not None and current.store is self.store:
                run = (current.id, current.correlation_id)
        if self.record_executions and self._is_agent(span):
            owner = self._open_execution(span, owner, run)
            with self._lock:
                self._agents[span_id] = owner
        with self._lock:
            if owner is not None:
                self._links[span_id] = owner
            elif run is not None:
                self._runs[span_id] = run

    def _open_execution(self, span: Span, parent: _Agent | None, run: tuple[str, str | None] | None) -> _Agent:
        attrs = span.attributes or {}
        ctx = span.get_span_context()
        correlation = _first(attrs, "syncstore.correlation_id", "gen_ai.conversation.id")
        correlation = correlation or (parent.correlation_id if parent else None) or (run[1] if run else None)
        metadata: dict[str, Any] = {"source": "opentelemetry", "span_name": span.name}
        parent_id = parent.execution_id if parent else (run[0] if run else None)
        if parent_id:
            metadata["parent_execution_id"] = parent_id
        if attrs.get("gen_ai.agent.id"):
            metadata["agent_id"] = attrs["gen_ai.agent.id"]
        created = self.store.executions.create(
            _agent_name(span.name, attrs),
            status="running",
            task_id=_first(attrs, "syncstore.task_id"),
            input=_messages(attrs.get("gen_ai.input.messages")),
            provider=_first(attrs, "gen_ai.provider.name", "gen_ai.system"),
            model=_first(attrs, "gen_ai.request.model"),
            trace_id=_hex_trace(ctx.trace_id),
            span_id=_hex_span(ctx.span_id),
            correlation_id=correlation,
            metadata=metadata,
            started_at=_ns_to_datetime(span.start_time or 0),
        )
        return _Agent(created.id, created.correlation_id)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._end(span)
        except Exception:
            log.exception("could not record span %r", span.name)

    def _end(self, span: ReadableSpan) -> None:
        span_id = span.get_span_context().span_id
        interrupted = sys.exc_info()[1]
        with self._lock:
            owner = self._links.pop(span_id, None)
            run = self._runs.pop(span_id, None)
            agent = self._agents.pop(span_id, None)
        fields = span_event(span, include_resource=self.include_resource)
        execution_id = owner.execution_id if owner else (run[0] if run else None)
        correlation = fields["correlation_id"] or (owner.correlation_id if owner else (run[1] if run else None))
        fields["correlation_id"] = correlation
        attrs = span.attributes or {}
        tokens, cost = span_usage(attrs)
        if owner is not None and owner is not agent:
            # A descendant of an agent span: its usage adds up to the run's.
            add_usage(owner.tokens, tokens)
            if cost is not None:
                owner.cost = (owner.cost or 0.0) + cost
            owner.model = owner.model or _first(attrs, "gen_ai.response.model", "gen_ai.request.model")
            owner.provider = owner.provider or _first(attrs, "gen_ai.provider.name", "gen_ai.system")
        self.store.events.emit(SPAN_EVENT, execution_id=execution_id, **fields)
        if agent is not None:
            self._close_execution(span, agent, tokens, cost, interrupted)

    def _close_execution(
        self, span: ReadableSpan, agent: _Agent, tokens: dict[str, int], cost: float | None, interrupted: BaseException | None
    ) -> None:
        attrs = span.attributes or {}
        exception = _exception_of(span) or {}
        exception_type = str(exception.get("exception.type") or "")
        status = span.status
        error = None
        if exception_type.rsplit(".", 1)[-1] in _CANCELLED:
            outcome, error = "cancelled", exception_type
        elif status.status_code is StatusCode.UNSET and interrupted is not None and not isinstance(interrupted, Exception):
            # Ended by a with-block that KeyboardInterrupt/CancelledError is leaving:
            # the SDK records only Exceptions, so the span itself says nothing.
            outcome, error = "cancelled", type(interrupted).__name__
        elif status.status_code is StatusCode.ERROR:
            outcome = "failed"
            error = status.description or exception.get("exception.message") or "error"
        else:
            outcome = "completed"
        if not tokens:
            tokens = dict(agent.tokens)
        if tokens:
            tokens["total_tokens"] = tokens.get("input_tokens", 0) + tokens.get("output_tokens", 0)
        output = _messages(attrs.get("gen_ai.output.messages"))
        self.store.executions.finish(
            agent.execution_id,
            outcome,
            agent_type=_agent_name(span.name, attrs),  # attributes set after the start count too
            error=error,
            output=output,
            token_usage=tokens or None,
            cost=cost if cost is not None else agent.cost,
            model=_first(attrs, "gen_ai.response.model", "gen_ai.request.model") or agent.model,
            provider=_first(attrs, "gen_ai.provider.name", "gen_ai.system") or agent.provider,
            completed_at=_ns_to_datetime(span.end_time or span.start_time or 0),
            duration_ms=max(0, (span.end_time or 0) - (span.start_time or 0)) / 1e6,
        )

    def shutdown(self) -> None:
        self.store.events.flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.store.events.flush()
        return True


def tracer_provider(store: Store, *, resource: Resource | None = None, **options: Any) -> TracerProvider:
    """A new ``TracerProvider`` that records into ``store`` (``options`` go to
    :class:`SyncstoreSpanProcessor`). Make it global with
    ``opentelemetry.trace.set_tracer_provider`` if you want."""
    provider = TracerProvider(resource=resource) if resource is not None else TracerProvider()
    provider.add_span_processor(SyncstoreSpanProcessor(store, **options))
    return provider
