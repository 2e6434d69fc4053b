"""The synced tables: one definition used by the replica, the server and validation.

Values travel and are stored locally in one canonical form, the one SQLite
keeps: ``None``, ``int``, ``float``, ``str`` or ``bytes``. JSON columns hold
compact JSON text with sorted keys, timestamps hold ISO-8601 UTC text with
microseconds (``2025-07-17T10:00:00.000000Z``), booleans hold 0 or 1, vectors
hold float32 bytes. The server converts to real PostgreSQL types (``jsonb``,
``timestamptz``, ``boolean``, ``vector``) and back, so replicas can compare
values byte for byte.

SQL identifiers anywhere in syncstore come only from these definitions.

Versions: the synced tables as a whole have a version, :data:`SCHEMA_VERSION`,
and every table and column says in which version it came (``since``). A peer
of any version can so work out what a peer of an older one knows
(:func:`tables_at`): a server sends an older client only those tables and
columns, and a client keeps back from an older server what it could not
take. To add a column or a table: raise ``SCHEMA_VERSION``, give the new
ones ``since=`` the new version (a required column also needs a default, which
an older client's inserts take), and add the migrations that make them.
Nothing is ever removed or renamed: a peer of an older version still sends it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Iterable, Mapping

import msgspec
import numpy as np

from syncstore import storable
from syncstore.errors import ValidationError

TYPES = ("text", "integer", "real", "boolean", "json", "timestamp", "blob", "vector")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
# A row id: a UUID written 8-4-4-4-12 in hex (any version, either case). Use it
# with .match; it ends in \Z because "$" would also accept a trailing newline.
UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
MAX_TEXT = storable.MAX_TEXT  # characters in one text value (what may be stored: syncstore.storable)
# The version of the synced tables (see the module docstring). Version 1 is
# every table and column with no ``since`` of its own; a peer that does not
# say its version (it predates versions) is of version 1.
SCHEMA_VERSION = 2  # 2: the LangGraph tables


def is_uuid(value: object) -> bool:
    """Whether ``value`` is a UUID string, the form of every row id."""
    return isinstance(value, str) and UUID_PATTERN.match(value) is not None


class Column(msgspec.Struct, frozen=True):
    name: str
    type: str
    required: bool = False  # must be given on insert and may not be set to NULL
    default: Any = None  # canonical (storage) form, applied on insert
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    # JSON columns: "object" or "array" when the value must be one (the typed
    # record holds a dict or a list); None accepts any JSON value.
    shape: str | None = None
    indexed: bool = False  # the column has an index (set from Table.indexes below)
    since: int = 1  # the schema version that added the column


class Table(msgspec.Struct, frozen=True):
    name: str
    columns: tuple[Column, ...]
    append_only: bool = False  # insert-only: rows are never updated or deleted
    indexes: tuple[str, ...] = ()  # columns with an index; shape filters may use them
    timestamps: bool = True  # created_at/updated_at maintained by the store
    since: int = 1  # the schema version that added the table

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise ValidationError("unknown column", table=self.name, field=name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def C(name: str, type_: str, **kw: Any) -> Column:
    assert type_ in TYPES and _IDENT.match(name), (name, type_)
    assert kw.get("shape") in (None, "object", "array") and (type_ == "json" or "shape" not in kw), (name, kw)
    return Column(name, type_, **kw)


def added_in(version: int, tbl: Table) -> Table:
    """``tbl`` as a table that came in schema ``version``, every column with it."""
    columns = tuple(msgspec.structs.replace(c, since=max(c.since, version)) for c in tbl.columns)
    return msgspec.structs.replace(tbl, since=version, columns=columns)


TASK_STATUSES = ("pending", "in_progress", "paused", "completed", "merged", "cancelled", "failed")
TASK_PRIORITIES = ("low", "medium", "high", "urgent")
TASK_MODES = ("code", "ask")
MESSAGE_ROLES = ("user", "assistant", "system", "tool")
EXECUTION_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
SEVERITIES = ("debug", "info", "warn", "error", "critical")
MEMORY_TYPES = (
    "conversation",
    "task_execution",
    "user_preference",
    "learned_pattern",
    "error_resolution",
    "context_summary",
    "knowledge_base",
    "skill_acquisition",
)
WORKFLOW_STATUSES = ("pending", "running", "paused", "waiting", "completed", "failed", "cancelled")
# "signal": a decision (approve/reject with data) sent to a waiting workflow; append-only,
# so signals written on two replicas never conflict (replica migration 0005).
SNAPSHOT_KINDS = ("step_start", "step_end", "checkpoint", "error", "manual", "signal")

_TIMES = (C("created_at", "timestamp"), C("updated_at", "timestamp"))

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "tasks",
            (
                C("id", "text", required=True),
                C("title", "text", required=True),
                C("description", "text", default=""),
                C("status", "text", default="pending", choices=TASK_STATUSES),
                C("priority", "text", default="medium", choices=TASK_PRIORITIES),
                C("branch", "text", default=""),
                C("repository", "text", default=""),
                C("session_id", "text", default=""),
                C("mode", "text", default="code", choices=TASK_MODES),
                C("is_archived", "boolean", default=0),
                C("has_changes", "boolean", default=0),
                C("status_message", "text"),
                C("pull_request", "json", shape="object"),
                C("user_id", "text"),
                C("metadata", "json", default="{}", shape="object"),
                *_TIMES,
            ),
            indexes=("status", "repository", "user_id", "updated_at"),
        ),
        Table(
            "task_messages",
            (
                C("id", "text", required=True),
                C("task_id", "text", required=True),
                C("position", "integer", required=True, minimum=0),
                C("role", "text", required=True, choices=MESSAGE_ROLES),
                C("type", "text", default="message"),
                C("content", "text", default=""),
                C("data", "json", default="{}", shape="object"),
                C("created_at", "timestamp"),
            ),
            append_only=True,
            indexes=("task_id",),
            timestamps=False,
        ),
        Table(
            "environments",
            (
                C("id", "text", required=True),
                C("name", "text", required=True),
                C("description", "text", default=""),
                C("github_organization", "text", default=""),
                C("github_repository", "text", default=""),
                C("is_active", "boolean", default=0),
                C("schema_version", "integer", default=1, minimum=1),
                C("config", "json", default="{}", shape="object"),
                C("user_id", "text"),
                *_TIMES,
            ),
            indexes=("user_id", "is_active"),
        ),
        Table(
            "agent_executions",
            (
                C("id", "text", required=True),
                C("task_id", "text"),
                C("agent_type", "text", required=True),
                C("status", "text", default="pending", choices=EXECUTION_STATUSES),
                C("input", "json"),
                C("output", "json"),
                C("error", "text"),
                C("started_at", "timestamp"),
                C("completed_at", "timestamp"),
                C("duration_ms", "real", minimum=0),
                C("token_usage", "json"),
                C("cost", "real", minimum=0),
                C("provider", "text"),
                C("model", "text"),
                C("trace_id", "text"),
                C("span_id", "text"),
                C("correlation_id", "text"),
                C("metadata", "json", default="{}"),
                *_TIMES,
            ),
            indexes=("task_id", "agent_type", "status", "trace_id", "started_at"),
        ),
        Table(
            "observability_events",
            (
                C("id", "text", required=True),
                C("execution_id", "text"),
                C("event_type", "text", required=True),
                C("timestamp", "timestamp", required=True),
                C("severity", "text", default="info", choices=SEVERITIES),
                C("component", "text"),
                C("operation", "text"),
                C("duration_ms", "real", minimum=0),
                C("error_code", "text"),
                C("error_message", "text"),
                C("error_stack", "text"),
                C("trace_id", "text"),
                C("span_id", "text"),
                C("parent_span_id", "text"),
                C("correlation_id", "text"),
                C("data", "json", default="{}"),
            ),
            append_only=True,
            indexes=("execution_id", "timestamp", "severity", "component", "trace_id"),
            timestamps=False,
        ),
        Table(
            "agent_memory",
            (
                C("id", "text", required=True),
                C("agent_id", "text", required=True),
                C("memory_type", "text", required=True, choices=MEMORY_TYPES),
                C("content", "text", required=True),
                C("context_key", "text"),
                C("importance", "integer", default=5, minimum=1, maximum=10),
                C("tags", "json", default="[]"),
                C("context", "json", default="{}"),
                C("last_accessed_at", "timestamp"),
                C("access_count", "integer", default=0, minimum=0),
                C("expires_at", "timestamp"),
                C("is_active", "boolean", default=1),
                C("embedding", "vector"),
                C("embedding_model", "text"),
                C("embedding_dimensions", "integer", minimum=1),
                C("metadata", "json", default="{}"),
                *_TIMES,
            ),
            indexes=("agent_id", "memory_type", "context_key", "embedding_model"),
        ),
        Table(
            "workflows",
            (
                C("id", "text", required=True),
                C("name", "text", required=True),
                C("version", "integer", default=1, minimum=1),
                C("definition", "json", required=True),
                C("description", "text", default=""),
                C("tags", "json", default="[]"),
                C("config", "json", default="{}"),
                C("schedule", "text"),
                C("is_active", "boolean", default=1),
                C("created_by", "text"),
                *_TIMES,
            ),
            indexes=("name",),
        ),
        Table(
            "workflow_executions",
            (
                C("id", "text", required=True),
                C("workflow_id", "text", required=True),
                C("workflow_version", "integer", required=True, minimum=1),
                C("status", "text", default="pending", choices=WORKFLOW_STATUSES),
                C("requested_status", "text", choices=("paused", "running", "cancelled")),
                C("input", "json"),
                C("output", "json"),
                C("state", "json", default="{}"),
                C("current_step", "integer", default=0, minimum=0),
                C("total_steps", "integer", minimum=0),
                C("error", "text"),
                C("started_at", "timestamp"),
                C("completed_at", "timestamp"),
                C("paused_at", "timestamp"),
                C("triggered_by", "text"),
                C("parent_execution_id", "text"),
                C("lease_owner", "text"),
                C("lease_expires_at", "timestamp"),
                C("metadata", "json", default="{}"),
                *_TIMES,
            ),
            indexes=("workflow_id", "status"),
        ),
        Table(
            "execution_snapshots",
            (
                C("id", "text", required=True),
                C("execution_id", "text", required=True),
                C("step_number", "integer", required=True, minimum=0),
                C("step_name", "text"),
                C("kind", "text", required=True, choices=SNAPSHOT_KINDS),
                C("state", "json", default="{}"),
                C("variables", "json", default="{}"),
                C("output", "json"),
                C("timestamp", "timestamp", required=True),
                C("duration_ms", "real", minimum=0),
                C("memory_bytes", "integer", minimum=0),
                C("cpu_ms", "real", minimum=0),
                C("metadata", "json", default="{}"),
            ),
            append_only=True,
            indexes=("execution_id",),
            timestamps=False,
        ),
        # LangGraph's durable state (syncstore.integrations.langgraph, replica
        # migration 0012). Row ids are made from the LangGraph key (thread,
        # namespace, checkpoint, ...; see integrations/langgraph/keys.py), so two
        # replicas that write one checkpoint write one row, and two checkpoints
        # never share a row: replicas of one tenant never conflict on them. Rows
        # are written once (a write with a special index may be replaced) and
        # deleted by delete_thread/prune. A thread's rows are a range of the
        # primary key, so only the lookups of every read have an index.
        added_in(2, Table(
            "langgraph_checkpoints",
            (
                C("id", "text", required=True),
                C("thread_id", "text", required=True),
                C("checkpoint_ns", "text", default=""),
                C("checkpoint_id", "text", required=True),
                C("parent_checkpoint_id", "text"),
                C("run_id", "text"),  # from the metadata, for delete_for_runs
                C("type", "text"),  # the serializer's type tag of ``checkpoint``
                C("checkpoint", "blob"),  # the checkpoint without its channel values
                C("metadata", "json", default="{}", shape="object"),
                C("created_at", "timestamp"),
            ),
            indexes=("thread_id",),  # a thread's latest checkpoint
            timestamps=False,
        )),
        added_in(2, Table(
            # One channel value per (thread, namespace, channel, version): stored once,
            # shared by every checkpoint whose channel_versions name that version.
            "langgraph_checkpoint_blobs",
            (
                C("id", "text", required=True),
                C("thread_id", "text", required=True),
                C("checkpoint_ns", "text", default=""),
                C("channel", "text", required=True),
                C("version", "text", required=True),
                C("type", "text"),
                C("blob", "blob"),
            ),
            timestamps=False,  # read by id only
        )),
        added_in(2, Table(
            "langgraph_checkpoint_writes",
            (
                C("id", "text", required=True),
                C("thread_id", "text", required=True),
                C("checkpoint_ns", "text", default=""),
                C("checkpoint_id", "text", required=True),
                C("task_id", "text", required=True),
                C("task_path", "text", default=""),
                C("idx", "integer", required=True),
                C("channel", "text", required=True),
                C("type", "text"),
                C("blob", "blob"),
            ),
            indexes=("thread_id",),  # a checkpoint's pending writes
            timestamps=False,
        )),
        added_in(2, Table(
            # LangGraph's long-term memory (BaseStore): one row per (namespace, key),
            # its id a UUIDv5 of both, so a key written on two replicas is one row
            # whose columns merge last-write-wins. ``namespace`` is the JSON array
            # of its labels; ``embeddings`` one float32 row per indexed text.
            "langgraph_store",
            (
                C("id", "text", required=True),
                C("namespace", "text", required=True),
                C("key", "text", required=True),
                C("value", "json", required=True, shape="object"),
                C("embeddings", "blob"),
                C("embedding_fields", "json", shape="array"),
                C("embedding_model", "text"),
                C("embedding_dimensions", "integer", minimum=1),
                C("expires_at", "timestamp"),
                C("ttl_minutes", "real", minimum=0),
                *_TIMES,
            ),
            indexes=("namespace", "expires_at"),
        )),
    )
}


def _mark_indexed(tbl: Table) -> Table:
    columns = tuple(msgspec.structs.replace(c, indexed=c.name in tbl.indexes) for c in tbl.columns)
    return msgspec.structs.replace(tbl, columns=columns)


# Text in an indexed column has a smaller limit (see syncstore.storable).
TABLES = {name: _mark_indexed(tbl) for name, tbl in TABLES.items()}


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except (KeyError, TypeError):
        raise ValidationError(f"unknown table {name!r}") from None


# --- versions ---------------------------------------------------------------

# Per (tables, SCHEMA_VERSION, version): the tables a peer of that version knows
# (the tables are kept with the answer: a test may swap them for another set).
_AT: dict[tuple[int, int, int], tuple[dict[str, Table], dict[str, Table]]] = {}


def peer_version(announced: int) -> int:
    """The schema version a peer announced, as this library takes it: 0 (a
    peer from before versions, which does not say) is version 1."""
    return max(1, announced)


def tables_at(version: int) -> dict[str, Table]:
    """The synced tables as a peer of schema ``version`` knows them: the
    tables and columns added later left out (all of them at this library's
    version or later)."""
    key = (id(TABLES), SCHEMA_VERSION, version)
    cached = _AT.get(key)
    if cached is not None and cached[0] is TABLES:
        return cached[1]
    if version >= SCHEMA_VERSION:
        found = TABLES
    else:
        found = {
            name: msgspec.structs.replace(tbl, columns=tuple(c for c in tbl.columns if c.since <= version))
            for name, tbl in TABLES.items()
            if tbl.since <= version
        }
    _AT[key] = (TABLES, found)
    return found


def added_after(version: int) -> dict[str, tuple[Column, ...]]:
    """Per table, the columns added after ``version`` (every column of a table
    added after it); tables with none are left out."""
    out = {}
    for name, tbl in TABLES.items():
        newer = tbl.columns if tbl.since > version else tuple(c for c in tbl.columns if c.since > version)
        if newer:
            out[name] = newer
    return out


def _check_versions(tables: Mapping[str, Table], version: int) -> None:
    for tbl in tables.values():
        assert 1 <= tbl.since <= version, (tbl.name, tbl.since)
        for col in tbl.columns:
            assert tbl.since <= col.since <= version, (tbl.name, col.name, col.since)
            # An older client's insert leaves a newer column out: it must take a default.
            assert not (col.since > tbl.since and col.required and col.default is None), (tbl.name, col.name)
        assert tbl.columns[0].name == "id" and tbl.columns[0].since == tbl.since, tbl.name


_check_versions(TABLES, SCHEMA_VERSION)


# --- canonical values -------------------------------------------------------


def now_iso() -> str:
    return format_timestamp(dt.datetime.now(dt.timezone.utc))


def format_timestamp(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime: give a timezone (UTC is stored)")
    # isoformat, not strftime: it always writes four year digits (strftime's %Y
    # writes "999" for the year 999, which would not sort) and is several times faster.
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(value: str) -> dt.datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no timezone")
    try:
        return parsed.astimezone(dt.timezone.utc)
    except OverflowError:  # e.g. year 1 at +05:00 is before the first UTC instant
        raise ValueError("outside the range of UTC timestamps") from None


def encode_json(value: Any) -> str:
    """The canonical JSON text of a value: compact, sorted keys, numbers as
    jsonb keeps them (see syncstore.storable). No limits are checked here."""
    return storable.jsonb_numbers(msgspec.json.encode(value, order="sorted").decode())


def to_storage(col: Column, value: Any, *, table_name: str = "") -> Any:
    """Check one value against its column and return its canonical form."""

    def bad(problem: str) -> ValidationError:
        return ValidationError(problem, table=table_name or None, field=col.name)

    if value is None:
        return None
    kind = col.type
    if kind == "text":
        if not isinstance(value, str):
            raise bad(f"expected text, got {type(value).__name__}")
        try:
            storable.text(value, indexed=col.indexed)
        except ValueError as exc:
            raise bad(str(exc)) from None
        if col.choices is not None and value not in col.choices:
            raise bad(f"{value!r} is not one of {', '.join(col.choices)}")
        return value
    if kind == "boolean":
        if isinstance(value, bool) or value in (0, 1):
            return int(value)
        raise bad(f"expected a boolean, got {value!r}")
    if kind in ("integer", "real"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"expected a number, got {type(value).__name__}")
        if kind == "integer":
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad(f"expected an integer, got {value!r}")
                value = int(value)
            if not storable.INT_MIN <= value <= storable.INT_MAX:
                raise bad("integer out of the 64-bit range")
        else:
            value = float(value)
            if not math.isfinite(value):
                raise bad("expected a finite number")
        if col.minimum is not None and value < col.minimum:
            raise bad(f"{value!r} is below the minimum {col.minimum:g}")
        if col.maximum is not None and value > col.maximum:
            raise bad(f"{value!r} is above the maximum {col.maximum:g}")
        return value
    if kind == "json":
        try:
            text = storable.json(value)
        except ValueError as exc:
            raise bad(str(exc)) from None
        if col.shape == "object" and not text.startswith("{"):
            raise bad(f"expected a JSON object, got {text[:40]}")
        if col.shape == "array" and not text.startswith("["):
            raise bad(f"expected a JSON array, got {text[:40]}")
        return text
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise bad("naive datetime: give a timezone")
            try:
                return format_timestamp(value)
            except OverflowError:
                raise bad("outside the range of UTC timestamps") from None
        if isinstance(value, str):
            try:
                return format_timestamp(parse_timestamp(value))
            except ValueError as exc:
                raise bad(f"not an ISO-8601 timestamp with a timezone: {exc}") from None
        raise bad(f"expected a timestamp, got {type(value).__name__}")
    if kind == "blob":
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                return storable.blob(bytes(value))
            except ValueError as exc:
                raise bad(str(exc)) from None
        raise bad(f"expected bytes, got {type(value).__name__}")
    if kind == "vector":
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) % 4 or not raw:
                raise bad("vector bytes must be a non-empty float32 array")
            array = np.frombuffer(raw, dtype=np.float32)
        else:
            try:
                array = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError):
                raise bad("expected a sequence of numbers") from None
            if array.ndim != 1 or array.size == 0:
                raise bad("expected a non-empty one-dimensional vector")
        try:
            storable.vector_dims(array.size)
        except ValueError as exc:
            raise bad(str(exc)) from None
        if not np.isfinite(array).all():
            raise bad("vector has a non-finite component")
        return array.astype(np.float32, copy=False).tobytes()
    raise bad(f"unsupported column type {kind}")  # pragma: no cover - schema bug


def validate_row(tbl: Table, values: Mapping[str, Any], *, insert: bool) -> dict[str, Any]:
    """Validate a set of column values; on insert fill defaults and require what is required."""
    if not isinstance(values, Mapping):
        raise ValidationError("row values must be a mapping", table=tbl.name)
    out: dict[str, Any] = {}
    for name, value in values.items():
        col = tbl.column(name) if isinstance(name, str) else None
        if col is None:
            raise ValidationError(f"column name must be text, got {name!r}", table=tbl.name)
        if col.name == "id" and not is_uuid(value):
            raise ValidationError("id must be a UUID string", table=tbl.name, field="id")
        out[name] = to_storage(col, value, table_name=tbl.name)
        if out[name] is None and col.required:
            raise ValidationError("is required and may not be null", table=tbl.name, field=name)
    if insert:
        for col in tbl.columns:
            if col.name not in out:
                if col.required:
                    raise ValidationError("is required", table=tbl.name, field=col.name)
                out[col.name] = col.default
    return out


def from_storage(col: Column, value: Any) -> Any:
    """The Python value of a canonical stored value (for records and display)."""
    if value is None:
        return None
    kind = col.type
    if kind == "boolean":
        return bool(value)
    if kind == "json":
        return msgspec.json.decode(value)
    if kind == "timestamp":
        return parse_timestamp(value)
    if kind == "vector":
        return np.frombuffer(value, dtype=np.float32)
    return value


def decode_row(tbl: Table, row: Mapping[str, Any], columns: Iterable[str] | None = None) -> dict[str, Any]:
    names = tbl.column_names if columns is None else columns
    return {name: from_storage(tbl.column(name), row[name]) for name in names if name in row}
