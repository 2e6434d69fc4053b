"""The typed records of agent memory: a memory, and a search hit.

A :class:`MemoryRecord` is an ``agent_memory`` row decoded to Python values,
without the embedding itself (it is large and rarely wanted; read it with
``Memory.embedding``). ``access_count`` and ``last_accessed_at`` include the
reads counted locally and not yet folded into the synced columns (see
:mod:`syncstore.memory.access`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from syncstore import schema
from syncstore.errors import ValidationError
from syncstore.shared.memory.columns import COLUMNS, TABLE



class MemoryRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    agent_id: str
    memory_type: str
    content: str
    context_key: str | None = None
    importance: int = 5
    tags: list[str] = []
    context: dict[str, Any] = {}
    last_accessed_at: dt.datetime | None = None
    access_count: int = 0
    expires_at: dt.datetime | None = None
    is_active: bool = True
    embedding_model: str | None = None
    embedding_dimensions: int | None = None
    metadata: dict[str, Any] = {}
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    """One search result: the memory, its ranking score and its cosine similarity."""

    memory: MemoryRecord
    score: float
    similarity: float


def check_tags(tags: Any) -> list[str]:
    """Tags as stored: distinct text values, sorted."""
    if tags is None:
        return []
    if isinstance(tags, str) or not all(isinstance(tag, str) and tag for tag in tags):
        raise ValidationError("tags must be a list of non-empty text values", table=TABLE, field="tags")
    return sorted(set(tags))


def from_row(row: dict[str, Any], *, pending: int = 0, accessed: str | None = None) -> MemoryRecord:
    """Decode a stored row; ``pending``/``accessed`` are the local access counts."""
    values = schema.decode_row(schema.TABLES[TABLE], row, COLUMNS)
    values["access_count"] = (values.get("access_count") or 0) + pending
    # Rows synced from elsewhere passed the schema, which checks JSON but not
    # its shape: read odd shapes leniently rather than fail the whole read.
    tags = values.get("tags")
    values["tags"] = [str(tag) for tag in tags] if isinstance(tags, list) else []
    for name in ("context", "metadata"):
        if not isinstance(values.get(name), dict):
            values[name] = {}
    if accessed is not None:
        local = schema.parse_timestamp(accessed)
        synced = values.get("last_accessed_at")
        values["last_accessed_at"] = local if synced is None or local > synced else synced
    return msgspec.convert(values, MemoryRecord)
