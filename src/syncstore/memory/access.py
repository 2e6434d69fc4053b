"""Access bookkeeping: which memories were read, how often, and when.

Counting a read with a synced write would turn every search into a burst of
writes to push, merge and fan out to every replica, and make two agents that
merely read the same memory "conflict". So reads are counted locally, in the
local-only table ``_ss_memory_access`` (not synced, not in the change log):
one small upsert per read memory, in one transaction per search.

:meth:`AccessLog.flush` folds the pending counts into the synced columns
``access_count`` and ``last_accessed_at`` (one ordinary write per memory, so
they sync). Those columns merge last-writer-wins like any other, so when two
replicas flush the same memory concurrently the later flush's total stands:
the synced count is a lower bound, good for ranking and consolidation hints,
not an exact audit. A flush does not touch ``updated_at``: reading a memory
does not make its content newer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from syncstore import schema
from syncstore.memory.records import TABLE

if TYPE_CHECKING:
    from syncstore.store import Store


class AccessLog:
    def __init__(self, store: Store):
        self.store = store

    def record(self, memory_ids: Iterable[str], *, at: str | None = None) -> None:
        """Count one read of each memory (a local write; nothing to sync)."""
        ids = list(dict.fromkeys(memory_ids))
        if not ids or self.store.readonly:
            return
        when = at or schema.now_iso()
        with self.store.transaction():
            conn = self.store.connection
            for memory_id in ids:
                conn.execute(
                    "insert into _ss_memory_access (memory_id, pending, last_accessed_at) values (?, 1, ?) "
                    "on conflict (memory_id) do update set pending = pending + 1, "
                    "last_accessed_at = max(last_accessed_at, excluded.last_accessed_at)",
                    (memory_id, when),
                )

    def pending(self, memory_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        """``{memory_id: (reads not yet flushed, last local read)}``."""
        ids = list(memory_ids)
        if not ids:
            return {}
        found = self.store.connection.execute(
            "select memory_id, pending, last_accessed_at from _ss_memory_access "
            "where memory_id in (select value from json_each(?))",
            (schema.encode_json(ids),),
        )
        return {memory_id: (count, last) for memory_id, count, last in found}

    def flush(self) -> int:
        """Fold local counts into the synced columns; returns how many memories were written."""
        if self.store.readonly:
            return 0
        written = 0
        with self.store.transaction():
            rows = self.store.query(
                "select a.memory_id, a.pending, a.last_accessed_at, m.id as live, m.access_count, "
                "m.last_accessed_at as synced_at "
                "from _ss_memory_access a left join agent_memory m on m.id = a.memory_id"
            )
            for row in rows:
                if row["live"] is None:
                    continue  # deleted since it was read
                last = row["last_accessed_at"]
                if row["synced_at"] is not None and row["synced_at"] > last:
                    last = row["synced_at"]
                # A read is not an edit: updated_at stays.
                self.store.update(
                    TABLE,
                    row["memory_id"],
                    {"access_count": (row["access_count"] or 0) + row["pending"], "last_accessed_at": last},
                    touch=False,
                )
                written += 1
            self.store.connection.execute("delete from _ss_memory_access")
        return written
