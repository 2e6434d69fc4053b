"""Reading agent_memory for the search indexes: all of it, or what changed since a cursor.

The feed (``_ss_memory_feed``, kept by triggers, see migration 0004) holds
one entry per memory with the sequence number of its latest write. An index
remembers the highest number it has applied and asks for entries above it;
each listed memory is read again (or found gone), so applying the same entry
twice is harmless. The cursor is taken *before* the rows are read, so a write
that lands in between is read now and again next time, never missed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator, NamedTuple

from syncstore import schema

if TYPE_CHECKING:
    import apsw

# The latest of: last edit, last synced read, last local read (epoch seconds).
TOUCHED_SQL = (
    "max(coalesce(unixepoch(m.updated_at, 'subsec'), 0), "
    "coalesce(unixepoch(m.last_accessed_at, 'subsec'), 0), "
    "coalesce(unixepoch(a.last_accessed_at, 'subsec'), 0))"
)

_ROW_SQL = (
    "select m.id, m.agent_id, m.memory_type, m.importance, m.tags, m.is_active, "
    f"unixepoch(m.expires_at, 'subsec'), {TOUCHED_SQL}, m.embedding "
    "from agent_memory m left join _ss_memory_access a on a.memory_id = m.id "
    "where m.embedding_model = ? and m.embedding_dimensions = ? and m.embedding is not null "
    "and length(m.embedding) = 4 * m.embedding_dimensions"
)


class IndexRow(NamedTuple):
    """What an index keeps of one memory."""

    id: str
    agent_id: str
    memory_type: str
    importance: int
    tags: tuple[str, ...]
    is_active: bool
    expires: float  # epoch seconds; infinity when it never expires
    touched: float  # epoch seconds
    vector: bytes  # float32


def _row(values: tuple) -> IndexRow:
    memory_id, agent, kind, importance, tags, active, expires, touched, vector = values
    try:
        tag_list = schema.from_storage(schema.Column("tags", "json"), tags) or []
    except ValueError:
        tag_list = []
    return IndexRow(
        memory_id,
        agent or "",
        kind or "",
        importance or 0,
        tuple(str(t) for t in tag_list) if isinstance(tag_list, list) else (),
        bool(active),
        math.inf if expires is None else float(expires),
        float(touched),
        vector,
    )


def position(conn: apsw.Connection) -> int:
    """The highest feed sequence number now."""
    return conn.execute("select coalesce(max(seq), 0) from _ss_memory_feed").fetchone()[0]


def changed_since(conn: apsw.Connection, cursor: int) -> tuple[list[str], int]:
    """Memories written after ``cursor``, and the new cursor."""
    found = list(conn.execute("select memory_id, seq from _ss_memory_feed where seq > ? order by seq", (cursor,)))
    if not found:
        return [], cursor
    return [memory_id for memory_id, _ in found], found[-1][1]


def rows_for(conn: apsw.Connection, ids: list[str], model: str, dimensions: int) -> dict[str, IndexRow]:
    """The listed memories that live and carry a vector of this model."""
    if not ids:
        return {}
    sql = _ROW_SQL + " and m.id in (select value from json_each(?))"
    return {row.id: row for row in map(_row, conn.execute(sql, (model, dimensions, schema.encode_json(ids))))}


def count(conn: apsw.Connection, model: str) -> int:
    """How many memories carry a vector of this model: an upper bound of an index's
    rows, answered from the model's index alone (testing the dimensions too would
    read every row, vector and all)."""
    return conn.execute("select count(*) from agent_memory where embedding_model = ?", (model,)).fetchone()[0]


def all_rows(conn: apsw.Connection, model: str, dimensions: int) -> Iterator[IndexRow]:
    return map(_row, conn.execute(_ROW_SQL, (model, dimensions)))


def touched_of(conn: apsw.Connection, ids: list[str]) -> dict[str, tuple[int, float]]:
    """``{id: (importance, touched)}`` for ranking candidates found elsewhere."""
    if not ids:
        return {}
    sql = (
        f"select m.id, m.importance, {TOUCHED_SQL} from agent_memory m "
        "left join _ss_memory_access a on a.memory_id = m.id where m.id in (select value from json_each(?))"
    )
    return {memory_id: (importance or 0, float(touched)) for memory_id, importance, touched in conn.execute(sql, (schema.encode_json(ids),))}
