"""Legacy tasks, their messages and environments as syncstore rows.

Every legacy field is kept: the ones with a column go to it, the status word
goes to ``metadata["legacy"]["status"]`` beside the mapped status, and any
field this importer does not know goes to ``metadata["legacy"]["extra"]``
(``config["legacy"]["extra"]`` for environments). Each message row keeps the
legacy message exactly as it was under ``data["legacy"]``; the columns and the
other ``data`` keys are derived from it. Rows come out in the schema's
canonical stored form, ready to compare with what a replica holds.

Items reach this module only after :mod:`.validate` found no problem; a value
of the wrong type can still fail here, with the legacy field's name.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import shlex
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec

from syncstore import schema, storable
from syncstore.core import hlc
from syncstore.errors import ValidationError
from syncstore.legacy.report import Duplicate
from syncstore.legacy.validate import STATUS_MAP
from syncstore.replica import rowcheck

TASKS = schema.table("tasks")
ENVIRONMENTS = schema.table("environments")

# legacy field -> column, for the fields that are copied as they are.
TASK_COLUMNS = {
    "title": "title",
    "description": "description",
    "branch": "branch",
    "sessionId": "session_id",
    "repository": "repository",
    "statusMessage": "status_message",
    "isArchived": "is_archived",
    "mode": "mode",
    "hasChanges": "has_changes",
    "pullRequest": "pull_request",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
}
TASK_HANDLED = {"id", "status", "messages", *TASK_COLUMNS}

ENVIRONMENT_COLUMNS = {
    "name": "name",
    "description": "description",
    "githubOrganization": "github_organization",
    "githubRepository": "github_repository",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
}
TOKEN_FIELD = "githubToken"  # goes to the local secret table, never to a row
ENVIRONMENT_HANDLED = {"id", TOKEN_FIELD, *ENVIRONMENT_COLUMNS}

# Fixed, so that the same legacy task always gives the same message ids.
MESSAGE_NAMESPACE = uuid.UUID("3f1c2a4e-8b7d-5e6f-9a0b-1c2d3e4f5a6b")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MS = dt.timedelta(milliseconds=1)
_encode = msgspec.json.Encoder(order="sorted").encode


@dataclass
class MappedTask:
    row: dict[str, Any]
    messages: list[dict[str, Any]]
    stamp: int  # the clock every row of this task is written with
    future: bool = False  # updatedAt was later than the import: stamped with the import time
    shell_pairs: int = 0
    duplicates: list[Duplicate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # unpaired shell calls and the like


@dataclass
class MappedEnvironment:
    row: dict[str, Any]
    stamp: int
    future: bool
    token: str | None  # never printed, never in a synced column


def stamp_of(updated_at: str, *, now_ms: int) -> tuple[int, bool]:
    """The clock stamp for values last changed at ``updated_at``: that
    millisecond, so imported values are ordered by it and any later edit wins.
    A time after ``now_ms`` (a browser with a fast clock) is stamped ``now_ms``
    instead, so the sync server does not refuse the stamp as clock drift."""
    ms = (schema.parse_timestamp(updated_at) - _EPOCH) // _MS
    return hlc.from_ms(max(1, min(ms, now_ms))), ms > now_ms


def _validated(tbl: schema.Table, values: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The canonical row; a bad value is reported under its legacy field name."""
    try:
        # The replica's compiled checker gives validate_row's result for a good
        # row at a fraction of the cost; a bad row goes through validate_row
        # itself, so the reason names the same problem as before.
        return rowcheck.checker(tbl).check(values, insert=True)
    except ValidationError:
        pass
    try:
        return schema.validate_row(tbl, values, insert=True)
    except ValidationError as exc:
        problem = str(exc).split(": ", 1)[-1]
        legacy = next((k for k, v in names.items() if v == exc.field), exc.field)
        raise ValidationError(f"{legacy}: {problem}" if legacy else problem) from None


def map_task(item: dict[str, Any], *, now_ms: int) -> MappedTask:
    values: dict[str, Any] = {"id": item["id"], "status": STATUS_MAP[item["status"]]}
    for legacy, column in TASK_COLUMNS.items():
        value = item.get(legacy)
        # Absent, null, or an empty mode: the column's default, as the old app showed it.
        if value is None or (column == "mode" and value == ""):
            continue
        values[column] = value
    legacy_meta: dict[str, Any] = {"status": item["status"]}
    extra = {k: v for k, v in item.items() if k not in TASK_HANDLED}
    if extra:
        legacy_meta["extra"] = extra
    values["metadata"] = {"legacy": legacy_meta}
    row = _validated(TASKS, values, TASK_COLUMNS)
    stamp, future = stamp_of(item["updatedAt"], now_ms=now_ms)
    mapped = MappedTask(row=row, messages=[], stamp=stamp, future=future)
    map_messages(mapped, item.get("messages") or [])
    return mapped


def map_environment(item: dict[str, Any], *, now_ms: int) -> MappedEnvironment:
    values: dict[str, Any] = {"id": item["id"]}
    for legacy, column in ENVIRONMENT_COLUMNS.items():
        value = item.get(legacy)
        if value is not None:
            values[column] = value
    extra = {k: v for k, v in item.items() if k not in ENVIRONMENT_HANDLED}
    values["config"] = {"legacy": {"extra": extra}} if extra else {}
    row = _validated(ENVIRONMENTS, values, ENVIRONMENT_COLUMNS)
    stamp, future = stamp_of(item["updatedAt"], now_ms=now_ms)
    token = item.get(TOKEN_FIELD) or None
    return MappedEnvironment(row=row, stamp=stamp, future=future, token=token)


def message_id_prefix(task_id: str) -> str:
    """All but the last six hex digits of the ids of one task's messages: a
    name-based (version 5) UUID of the task id."""
    h = hashlib.sha1(MESSAGE_NAMESPACE.bytes + task_id.encode()).hexdigest()
    variant = "89ab"[int(h[16], 16) & 0x3]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:26]}"


def message_id(task_id: str, position: int) -> str:
    """The id of the message at ``position`` of a legacy task: the same on every
    import and every machine, so a second import finds it already there."""
    return f"{message_id_prefix(task_id)}{position:06x}"


def map_messages(task: MappedTask, messages: list[dict[str, Any]]) -> None:
    """Rows for a task's messages, in order; shell calls paired with outputs.
    Runs for every message of an export, so it is written for speed."""
    task_id = task.row["id"]
    prefix = message_id_prefix(task_id)
    rows = task.messages
    append = rows.append
    copies = _Copies(messages)
    calls: dict[str, int] = {}  # call_id -> position of the shell call
    outputs: dict[str, int] = {}  # call_id -> position of its output
    for position, message in enumerate(messages):
        extra: dict[str, Any] = {"legacy": message}
        data = message.get("data")
        if not isinstance(data, dict):
            data = {}
        kind = message.get("type", "message")
        role = message["role"]
        duplicate = False
        if role == "assistant":
            first = copies.earlier(position, message, data)
            if first is not None:
                duplicate = True
                extra["duplicate_of"] = f"{prefix}{first:06x}"
                task.duplicates.append(Duplicate(task_id=task_id, position=position, duplicate_of=first))
        if kind == "local_shell_call":
            content = _shell_call(data, extra)
            call_id = extra.get("call_id")
            if call_id is not None and not duplicate:
                calls.setdefault(call_id, position)
        elif kind == "local_shell_call_output":
            content = _shell_output(data, extra)
            call_id = extra.get("call_id")
            if call_id is not None and not duplicate:
                outputs.setdefault(call_id, position)
        else:
            content = data.get("text")
            if type(content) is not str and not isinstance(content, str):
                content = ""
        append(
            {
                "id": f"{prefix}{position:06x}",
                "task_id": task_id,
                "position": position,
                "role": role,
                "type": kind,
                "content": content,
                "data": extra,  # encoded below, once the pairs are known
                "created_at": None,  # the old app kept no time per message
            }
        )
    for call_id, call_at in calls.items():
        output_at = outputs.get(call_id)
        if output_at is None:
            task.notes.append(f"task {task_id}: shell call {call_id!r} (message {call_at}) has no output")
            continue
        rows[call_at]["data"]["output_message_id"] = f"{prefix}{output_at:06x}"
        rows[output_at]["data"]["call_message_id"] = f"{prefix}{call_at:06x}"
        task.shell_pairs += 1
    for call_id, output_at in outputs.items():
        if call_id not in calls:
            task.notes.append(f"task {task_id}: shell output {call_id!r} (message {output_at}) has no call")
    limit = schema.MAX_TEXT
    encode = _encode
    for row in rows:
        content = row["content"]
        if len(content) > limit or "\x00" in content:
            row["content"] = _fit(content, row["data"])  # may mark data, so before encoding it
        data = encode(row["data"]).decode()
        if "\\u0000" in data:
            data = _without_nul(row["data"])
        row["data"] = storable.jsonb_numbers(data)  # canonical, as the schema writes JSON


def _without_nul(extra: dict[str, Any]) -> str:
    """The JSON of ``extra`` with every NUL character in its strings replaced by
    U+FFFD: PostgreSQL's jsonb cannot hold one, so the schema refuses it."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("\x00", "\ufffd")
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        return value

    cleaned = clean(extra)
    if cleaned != extra:
        cleaned["nul_replaced"] = True
    return _encode(cleaned).decode()


class _Copies:
    """Finds, for an assistant message, an earlier message of the same task
    exactly equal to it (as JSON). A cheap fingerprint finds candidates; only
    they are encoded, each at most once (exports repeat some answers many times)."""

    def __init__(self, messages: list[dict[str, Any]]):
        self.messages = messages
        self.seen: dict[Any, list[int]] = {}  # fingerprint -> positions with it, first seen first
        self.encoded: dict[int, bytes] = {}  # position -> its message as JSON, once needed

    def _json(self, position: int) -> bytes:
        found = self.encoded.get(position)
        if found is None:
            found = self.encoded[position] = _encode(self.messages[position])
        return found

    def earlier(self, position: int, message: dict[str, Any], data: dict[str, Any]) -> int | None:
        """The position of the first earlier copy of ``message``, or None."""
        key: Any = (message.get("type"), data.get("text"), data.get("call_id"), data.get("output"), message.get("data") is data)
        seen = self.seen
        try:
            candidates = seen.get(key)
        except TypeError:  # unusual values: fall back to the whole message
            key = self._json(position)
            candidates = seen.get(key)
        if candidates is None:
            seen[key] = [position]
            return None
        encoded = self._json(position)
        for earlier in candidates:
            if self._json(earlier) == encoded:
                return earlier
        candidates.append(position)
        return None


@functools.lru_cache(maxsize=4096)
def _join(command: tuple[str, ...]) -> str:
    return shlex.join(command)  # agents run the same few commands again and again


def _shell_call(data: dict[str, Any], extra: dict[str, Any]) -> str:
    call_id = data.get("call_id")
    if isinstance(call_id, str):
        extra["call_id"] = call_id
    action = data.get("action")
    command = action.get("command") if isinstance(action, dict) else None
    if isinstance(command, list):
        parts = tuple(command)
        if all(type(part) is str or isinstance(part, str) for part in parts):
            extra["command"] = command
            return _join(parts)
    return ""


def _shell_output(data: dict[str, Any], extra: dict[str, Any]) -> str:
    """The output's text; ``output`` is JSON text whose ``output`` is the text
    and ``metadata.exit_code`` the exit code (plain text is kept as it is)."""
    call_id = data.get("call_id")
    if isinstance(call_id, str):
        extra["call_id"] = call_id
    raw = data.get("output")
    parsed = raw
    if isinstance(raw, str):
        try:
            parsed = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return raw
    if not isinstance(parsed, dict):
        return raw if isinstance(raw, str) else ""
    metadata = parsed.get("metadata")
    exit_code = metadata.get("exit_code") if isinstance(metadata, dict) else None
    if isinstance(exit_code, int) and not isinstance(exit_code, bool):
        extra["exit_code"] = exit_code
    text = parsed.get("output")
    return text if isinstance(text, str) else (raw if isinstance(raw, str) else "")


def _fit(content: str, extra: dict[str, Any]) -> str:
    """``content`` within what a text column holds. It is derived for display and
    search; the whole message stays in ``data["legacy"]``."""
    if "\x00" in content:
        content = content.replace("\x00", "\ufffd")
    if len(content) > schema.MAX_TEXT:
        content = content[: schema.MAX_TEXT]
        extra["content_truncated"] = True
    return content
