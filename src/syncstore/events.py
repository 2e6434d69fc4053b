"""Observability events: an append-only, synced log of what agents did.

    store.events.emit("tool.call", component="search", operation="query", duration_ms=12.5,
                      data={"hits": 3})
    try:
        ...
    except Exception as exc:
        ref = store.events.error(exc, component="search")   # returns the correlation id

``emit`` checks its arguments and puts the event into a bounded in-memory
buffer: the caller pays a few microseconds, and a background thread writes
the buffer in large transactions. Events with a severity in
``durable_severities`` (``error`` and ``critical`` by default) are written
before ``emit`` returns. See :mod:`syncstore.event_writer` for when the
buffer is flushed and exactly what a hard crash can lose (the events of the
last flush interval, 0.1 s by default). Reads through this API flush first,
so a process always reads its own events.

Inside ``store.executions.track(...)`` events are linked to the running
execution (its id and correlation id) unless given explicitly.

Events are not part of the caller's transaction: a rollback does not take
back an event that was emitted inside it.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
import traceback
from time import time_ns
from typing import TYPE_CHECKING, Any, Iterator

import msgspec

from syncstore import records, schema, storable
from syncstore.core.ids import uuid7
from syncstore.errors import ValidationError
from syncstore.event_writer import EventWriter
from syncstore.tracking import _CURRENT, current_run

if TYPE_CHECKING:
    from syncstore.store import Store

TABLE = "observability_events"
SEVERITIES = schema.SEVERITIES  # the one vocabulary, defined in the schema
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
MAX_STACK = 64_000  # characters of a traceback kept in an error event

_TEXT_FIELDS = (
    "execution_id",
    "component",
    "operation",
    "error_code",
    "error_message",
    "error_stack",
    "trace_id",
    "span_id",
    "parent_span_id",
    "correlation_id",
)
_MAX_TEXT = schema.MAX_TEXT
_MAX_INDEXED = storable.MAX_INDEXED_TEXT  # the fast check's limit; a longer text gets the exact one
_encode_json = msgspec.json.Encoder(order="sorted").encode  # as schema.encode_json, reused
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICRO = dt.timedelta(microseconds=1)
_FIRST_NS = (dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc) - _EPOCH) // _MICRO * 1000
_LAST_NS = (dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc) - _EPOCH) // _MICRO * 1000 + 1000


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``observability_events``."""

    id: str
    execution_id: str | None = None
    event_type: str
    timestamp: dt.datetime
    severity: str = "info"
    component: str | None = None
    operation: str | None = None
    duration_ms: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_stack: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    correlation_id: str | None = None
    data: dict[str, Any] = {}


def severities_from(minimum: str) -> tuple[str, ...]:
    """``minimum`` and every severity above it."""
    if minimum not in SEVERITY_RANK:
        raise ValidationError(f"{minimum!r} is not one of {', '.join(SEVERITIES)}", table=TABLE, field="severity")
    return SEVERITIES[SEVERITY_RANK[minimum] :]


def to_ns(value: dt.datetime | str | int) -> int:
    """An event time as nanoseconds since the epoch. Stored timestamps keep
    microseconds, so a datetime or text converts exactly to what is stored."""
    if type(value) is int:
        if not _FIRST_NS <= value < _LAST_NS:
            raise ValidationError("nanoseconds outside the years 1..9999", table=TABLE, field="timestamp")
        return value
    if isinstance(value, str):
        try:
            value = schema.parse_timestamp(value)
        except ValueError as exc:
            raise ValidationError(f"not an ISO-8601 timestamp with a timezone: {exc}", table=TABLE, field="timestamp") from None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ValidationError("expected an aware datetime, ISO text or nanoseconds", table=TABLE, field="timestamp")
    return ((value - _EPOCH) // _MICRO) * 1000


def _check_texts(texts: tuple[Any, ...]) -> None:
    """The exact check, for texts the fast one doubts: raises the schema's
    error for the first bad one (a long text is fine where no index is)."""
    tbl = schema.table(TABLE)
    for name, value in zip(_TEXT_FIELDS, texts):
        schema.to_storage(tbl.column(name), value, table_name=TABLE)


def _utf8(text: str) -> bool:
    """Whether SQLite can take the text (no lone surrogate); ASCII costs nothing."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValidationError(f"expected a finite number >= 0, got {value!r}", table=TABLE, field="duration_ms")
    return float(value)


class Events:
    """Write and read ``observability_events``; ``store.events``."""

    table = TABLE

    def __init__(
        self,
        store: Store,
        *,
        flush_interval: float = 0.1,
        batch_size: int = 2_000,
        max_buffer: int = 100_000,
        durable_severities: tuple[str, ...] = ("error", "critical"),
    ):
        self.store = store
        self.writer = EventWriter(store, flush_interval=flush_interval, batch_size=batch_size, max_buffer=max_buffer)
        self._put = self.writer.put
        self._durable = frozenset(durable_severities)
        for name in self._durable:
            severities_from(name)
        # The buffer must reach the file before the connection goes away, so the
        # store's close (and its ``with`` block) flushes the events first.
        store.on_close(self.close)

    def configure(
        self,
        *,
        flush_interval: float | None = None,
        batch_size: int | None = None,
        max_buffer: int | None = None,
        durable_severities: tuple[str, ...] | None = None,
    ) -> None:
        """Change the writer's settings; takes effect from the next event."""
        w = self.writer
        interval = w.flush_interval if flush_interval is None else flush_interval
        batch = w.batch_size if batch_size is None else batch_size
        maximum = w.max_buffer if max_buffer is None else max_buffer
        if interval <= 0 or batch < 1 or maximum < batch:
            raise ValueError("need flush_interval > 0, batch_size >= 1, max_buffer >= batch_size")
        w.flush_interval, w.batch_size, w.max_buffer = interval, batch, maximum
        if durable_severities is not None:
            for name in durable_severities:
                severities_from(name)
            self._durable = frozenset(durable_severities)

    # --- writing --------------------------------------------------------------------

    def emit(
        self,
        event_type: str,
        *,
        severity: str = "info",
        component: str | None = None,
        operation: str | None = None,
        duration_ms: float | None = None,
        data: dict[str, Any] | None = None,
        execution_id: str | None = None,
        correlation_id: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        parent_span_id: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        error_stack: str | None = None,
        timestamp: dt.datetime | str | int | None = None,
    ) -> None:
        """Record one event (buffered). ``timestamp`` defaults to now; an int is
        nanoseconds since the epoch, as OpenTelemetry gives them."""
        # Checks are inlined and cheap: this is on the caller's path. The values
        # are exactly what the schema would store (a test holds the two equal).
        if severity not in SEVERITY_RANK:
            raise ValidationError(f"{severity!r} is not one of {', '.join(SEVERITIES)}", table=TABLE, field="severity")
        if event_type.__class__ is not str or not event_type or "\x00" in event_type or len(event_type) > _MAX_TEXT or not (event_type.isascii() or _utf8(event_type)):
            raise ValidationError("must be non-empty text", table=TABLE, field="event_type")
        if execution_id is None or correlation_id is None:
            run = _CURRENT.get()
            if run is not None and run.store is self.store:
                execution_id = execution_id or run.id
                correlation_id = correlation_id or run.correlation_id
                trace_id = trace_id or run.trace_id
        texts = (
            execution_id, component, operation, error_code, error_message,
            error_stack, trace_id, span_id, parent_span_id, correlation_id,
        )  # fmt: skip
        for value in texts:
            if value is not None and (value.__class__ is not str or "\x00" in value or len(value) > _MAX_INDEXED or not (value.isascii() or _utf8(value))):
                _check_texts(texts)  # raises, unless each is a long text where one may be
                break
        if duration_ms is not None:
            if duration_ms.__class__ is not float:
                duration_ms = _duration(duration_ms)
            elif not 0.0 <= duration_ms < math.inf:
                duration_ms = _duration(duration_ms)
        if data is None:
            data_json = "{}"
        else:
            try:
                data_json = storable.encoded_json(_encode_json(data))
            except RecursionError:
                raise ValidationError(
                    f"JSON nested deeper than {storable.MAX_JSON_DEPTH} levels", table=TABLE, field="data"
                ) from None
            except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
                problem = str(exc) if str(exc).startswith("JSON") else f"not valid JSON: {exc}"
                raise ValidationError(problem, table=TABLE, field="data") from None
        self._put(
            (time_ns() if timestamp is None else to_ns(timestamp), execution_id, event_type, severity, component,
             operation, duration_ms, error_code, error_message, error_stack, trace_id, span_id, parent_span_id,
             correlation_id, data_json),
            urgent=severity in self._durable,
        )  # fmt: skip

    def error(
        self,
        exc: BaseException,
        *,
        event_type: str = "error",
        severity: str = "error",
        component: str | None = None,
        operation: str | None = None,
        correlation_id: str | None = None,
        execution_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> str:
        """Record an exception as an event and return its correlation id.

        The correlation id is, in order: the one given, the exception's own
        (``exc.correlation_id``), the running execution's, or a new one; it is
        also set on the exception so whoever handles it next can quote it.
        ``error_code`` is the error's ``code`` (syncstore errors) or its type
        name; its structured fields go into ``data``.
        """
        run = current_run()
        if run is not None and run.store is not self.store:
            run = None
        cid = correlation_id or getattr(exc, "correlation_id", None) or (run.correlation_id if run else None) or uuid7()
        try:
            exc.correlation_id = cid  # type: ignore[attr-defined]
        except AttributeError:  # some exception types refuse new attributes
            pass
        code = getattr(exc, "code", None)
        details = {"exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}"}
        for key, value in vars(exc).items():
            if not key.startswith("_") and key != "correlation_id" and isinstance(value, (str, int, float, bool, type(None))):
                details[key] = value
        if hasattr(exc, "retryable"):
            details["retryable"] = bool(exc.retryable)  # type: ignore[attr-defined]
        stack = "".join(traceback.format_exception(exc))
        if len(stack) > MAX_STACK:
            stack = "...\n" + stack[-MAX_STACK:]  # the innermost frames matter most
        self.emit(
            event_type,
            severity=severity,
            component=component,
            operation=operation,
            execution_id=execution_id,
            correlation_id=cid,
            error_code=code if isinstance(code, str) else type(exc).__name__,
            error_message=str(exc)[: schema.MAX_TEXT] or type(exc).__name__,
            error_stack=stack.replace("\x00", ""),
            data={**details, **(data or {})},
        )
        return cid

    def flush(self) -> int:
        """Write the buffer now; returns how many events were written."""
        return self.writer.flush()

    def close(self) -> None:
        """Write the buffer and stop the background thread (the store's close does this)."""
        self.writer.close()

    @property
    def pending(self) -> int:
        """Events emitted but not yet written."""
        return self.writer.pending

    # --- reading --------------------------------------------------------------------

    def _read(self, sql: str, params: tuple[Any, ...] | list[Any]) -> list[dict[str, Any]]:
        if self.writer.pending and not self.writer.closed and self.writer.may_flush_here():
            self.writer.flush()
        return self.store.query(sql, params)

    def _record(self, row: dict[str, Any]) -> Event:
        return records.from_row(Event, TABLE, row)

    def get(self, event_id: str) -> Event | None:
        rows = self._read(f"select * from {TABLE} where id = ?", (event_id,))
        return self._record(rows[0]) if rows else None

    def for_execution(self, execution_id: str) -> list[Event]:
        """An execution's events in time order (ties: by id, the same everywhere)."""
        rows = self._read(f"select * from {TABLE} where execution_id = ? order by timestamp, id", (execution_id,))
        return [self._record(r) for r in rows]

    def for_trace(self, trace_id: str) -> list[Event]:
        rows = self._read(f"select * from {TABLE} where trace_id = ? order by timestamp, id", (trace_id,))
        return [self._record(r) for r in rows]

    def for_correlation(self, correlation_id: str) -> list[Event]:
        rows = self._read(f"select * from {TABLE} where correlation_id = ? order by timestamp, id", (correlation_id,))
        return [self._record(r) for r in rows]

    def rows_between(self, *, since: str | None = None, until: str | None = None) -> list[dict[str, Any]]:
        """Stored rows with ``since <= timestamp < until`` (canonical timestamp text)."""
        clauses, params = [], []
        if since is not None:
            clauses.append("timestamp >= ?")
            params.append(since)
        if until is not None:
            clauses.append("timestamp < ?")
            params.append(until)
        where = f" where {' and '.join(clauses)}" if clauses else ""
        return self._read(f"select * from {TABLE}{where} order by timestamp, id", params)

    def tail(
        self,
        *,
        after: int = 0,
        last: int | None = None,
        severity: str | None = None,
        component: str | None = None,
        execution_id: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[int, Event]]:
        """Events in arrival order as ``(rowid, event)``: those after ``after``
        (a rowid), or the ``last`` n. ``severity`` is a minimum.

        Arrival order is the order rows reached this replica, whether written
        here or merged in by sync: the table is append-only, so rowids only grow.
        """
        clauses, params = ["rowid > ?"], [after]
        if severity is not None:
            levels = severities_from(severity)
            clauses.append(f"severity in ({', '.join('?' * len(levels))})")
            params.extend(levels)
        if component is not None:
            clauses.append("component = ?")
            params.append(component)
        if execution_id is not None:
            clauses.append("execution_id = ?")
            params.append(execution_id)
        sql = f"select rowid as _rowid, * from {TABLE} where {' and '.join(clauses)}"
        if last is not None:
            sql = f"select * from ({sql} order by rowid desc limit ?) order by _rowid"
            params.append(last)
        else:
            sql += " order by rowid"
            if limit is not None:
                sql += " limit ?"
                params.append(limit)
        return [(row.pop("_rowid"), self._record(row)) for row in self._read(sql, params)]

    def follow(
        self,
        *,
        after: int | None = None,
        last: int = 0,
        severity: str | None = None,
        component: str | None = None,
        execution_id: str | None = None,
        poll_interval: float = 0.25,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield events as they arrive: first the ``last`` n (or those after the
        rowid ``after``), then new ones, polling every ``poll_interval`` seconds
        until ``stop`` is set (or the caller stops iterating)."""
        filters = dict(severity=severity, component=component, execution_id=execution_id)
        if after is None:
            found = self.tail(last=last, **filters) if last else []
            after = found[-1][0] if found else self._max_rowid()
        else:
            found = []
        while True:
            for rowid, event in found:
                after = rowid
                yield event
            if stop is not None and stop.is_set():
                return
            found = self.tail(after=after, limit=1000, **filters)
            if not found:
                if stop is not None:
                    stop.wait(poll_interval)
                else:
                    time.sleep(poll_interval)

    def _max_rowid(self) -> int:
        return self._read(f"select coalesce(max(rowid), 0) as n from {TABLE}", ())[0]["n"]

    def count(self) -> int:
        return self._read(f"select count(*) as n from {TABLE}", ())[0]["n"]
