"""Typed records returned by the domain APIs (msgspec Structs).

Each mirrors one synced table; fields are Python values (``bool``, ``dict``,
``datetime``), not the stored forms. Build one from a stored row with
:func:`from_row`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

import msgspec

from syncstore import schema

T = TypeVar("T", bound=msgspec.Struct)


class Task(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    description: str = ""
    status: str = "pending"
    priority: str = "medium"
    branch: str = ""
    repository: str = ""
    session_id: str = ""
    mode: str = "code"
    is_archived: bool = False
    has_changes: bool = False
    status_message: str | None = None
    pull_request: dict[str, Any] | None = None
    user_id: str | None = None
    metadata: dict[str, Any] = {}
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class TaskMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    task_id: str
    position: int
    role: str
    type: str = "message"
    content: str = ""
    data: dict[str, Any] = {}
    created_at: dt.datetime | None = None


class Environment(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    description: str = ""
    github_organization: str = ""
    github_repository: str = ""
    is_active: bool = False
    schema_version: int = 1
    config: dict[str, Any] = {}
    user_id: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


def from_row(record_type: type[T], table: str, row: dict[str, Any]) -> T:
    """Decode a stored row of ``table`` into ``record_type``."""
    return msgspec.convert(schema.decode_row(schema.table(table), row), record_type)


def to_dict(record: msgspec.Struct) -> dict[str, Any]:
    """A record as plain JSON-ready builtins (for ``--json`` output)."""
    return msgspec.to_builtins(record)
