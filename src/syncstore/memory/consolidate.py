"""Consolidation: fold an agent's old, unimportant memories into one summary.

Candidates are the agent's active, unexpired memories of importance at most
``max_importance`` that nobody has touched (edited or read, see the ranking's
"touched") for ``older_than``; summaries themselves (``context_summary``) are
never candidates, so consolidating twice does not summarise a summary. With
fewer than ``min_memories`` candidates nothing happens.

The summarizer runs first, outside any transaction (it may be a slow model
call). Then, in one transaction of ordinary writes (so it all syncs, and
another replica sees all of it or none): the new ``context_summary`` memory
is inserted, with the highest importance among those it folds, the union of
their tags, and their ids in ``context.consolidated_from``; and each folded
memory is deactivated (or deleted with ``delete=True``). A candidate that was
changed or deactivated while the summarizer ran is left alone, and is not
listed as folded.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Callable

from syncstore import schema
from syncstore.errors import ValidationError
from syncstore.memory import feed
from syncstore.memory.records import TABLE, MemoryRecord
from syncstore.memory.summarize import extractive_summary

if TYPE_CHECKING:
    from syncstore.memory.api import Memory


def consolidate(
    memory: Memory,
    agent_id: str,
    *,
    summarizer: Callable[[list[MemoryRecord]], str] | None = None,
    older_than: dt.timedelta = dt.timedelta(days=7),
    max_importance: int = 4,
    min_memories: int = 3,
    delete: bool = False,
    now: dt.datetime | None = None,
) -> MemoryRecord | None:
    if min_memories < 1:
        raise ValidationError("min_memories must be at least 1")
    store = memory.store
    when = now or dt.datetime.now(dt.timezone.utc)
    cutoff = (when - older_than).timestamp()
    now_iso = schema.format_timestamp(when)
    rows = store.query(
        f"select m.id, m.updated_at from agent_memory m left join _ss_memory_access a on a.memory_id = m.id "
        f"where m.agent_id = ? and m.is_active = 1 and m.memory_type != 'context_summary' and m.importance <= ? "
        f"and (m.expires_at is null or m.expires_at > ?) and {feed.TOUCHED_SQL} < ? "
        f"order by m.created_at, m.id",
        (agent_id, max_importance, now_iso, cutoff),
    )
    if len(rows) < min_memories:
        return None
    seen_versions = {row["id"]: row["updated_at"] for row in rows}
    records = memory._records(list(seen_versions))
    candidates = [records[i] for i in seen_versions if i in records]
    text = (summarizer or extractive_summary)(candidates)
    if not isinstance(text, str) or not text.strip():
        return None
    vector = memory._embed([text])[0]
    with store.transaction():
        folded = [
            record
            for record in candidates
            if (row := store.get(TABLE, record.id)) is not None
            and row["is_active"] == 1
            and row["updated_at"] == seen_versions[record.id]
        ]
        if len(folded) < min_memories:
            return None
        summary_id = store.insert(
            TABLE,
            {
                "agent_id": agent_id,
                "memory_type": "context_summary",
                "content": text,
                "importance": max(r.importance for r in folded),
                "tags": sorted({tag for r in folded for tag in r.tags}),
                "context": {"consolidated_from": [r.id for r in folded], "consolidated_count": len(folded)},
                "metadata": {"summarizer": getattr(summarizer, "__name__", None) or "extractive_summary"},
                **memory._vector_fields(vector, memory.embedder.model),
            },
        )
        for record in folded:
            if delete:
                store.delete(TABLE, record.id)
            else:
                store.update(TABLE, record.id, {"is_active": False})
    return memory.get(summary_id, record_access=False)
