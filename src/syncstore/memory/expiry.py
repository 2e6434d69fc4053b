"""The expiry sweep: memories past ``expires_at`` are deactivated, or deleted.

Search and listings already skip expired memories by themselves, so the sweep
is housekeeping, not correctness: it turns "expired" into a state every
replica sees (``is_active = false``, or a tombstone with ``delete=True``) by
ordinary writes, in one transaction, so they sync.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from syncstore import schema
from syncstore.memory.records import TABLE

if TYPE_CHECKING:
    from syncstore.memory.api import Memory


def sweep_expired(memory: Memory, *, now: dt.datetime | None = None, delete: bool = False, agent_id: str | None = None) -> int:
    store = memory.store
    when = schema.format_timestamp(now or dt.datetime.now(dt.timezone.utc))
    sql = "select id from agent_memory where expires_at is not null and expires_at <= ?"
    params: list[object] = [when]
    if not delete:
        sql += " and is_active = 1"  # already inactive: nothing to write
    if agent_id is not None:
        sql += " and agent_id = ?"
        params.append(agent_id)
    with store.transaction():
        ids = [row[0] for row in store.connection.execute(sql, params)]
        for memory_id in ids:
            if delete:
                store.delete(TABLE, memory_id)
            else:
                store.update(TABLE, memory_id, {"is_active": False})
    return len(ids)
