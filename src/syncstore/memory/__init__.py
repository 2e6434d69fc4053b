"""Agent memory with vector search: ``store.memory``.

    store.memory.add("agent-1", "The deploy needs VPN access", memory_type="learned_pattern")
    hits = store.memory.search("how do I deploy?", agent_id="agent-1", k=5)

The parts, one file each: records (:mod:`.records`), the API (:mod:`.api`),
filters and ranking (:mod:`syncstore.shared.memory`, shared with the sync
server), local access counts (:mod:`.access`), embedders (:mod:`.embedders`,
the hashing one shared too), search engines
(:mod:`.engines`) kept in step by the memory feed (:mod:`.feed`),
consolidation (:mod:`.consolidate`, :mod:`.summarize`), the expiry sweep
(:mod:`.expiry`), task search (:mod:`.task_search`), and the same search over
the server's PostgreSQL (:mod:`syncstore.shared.memory.server_search`). See docs/memory.md.
"""

from syncstore.memory.api import Memory
from syncstore.memory.embedders import Embedder, HashingEmbedder, HttpEmbedder, SentenceTransformerEmbedder
from syncstore.shared.memory.filters import FilterOptions, Filters
from syncstore.shared.memory.ranking import Ranking
from syncstore.memory.records import Hit, MemoryRecord
from syncstore.memory.summarize import extractive_summary
from syncstore.memory.task_search import TaskHit

__all__ = [
    "Embedder",
    "FilterOptions",
    "Filters",
    "HashingEmbedder",
    "Hit",
    "HttpEmbedder",
    "Memory",
    "MemoryRecord",
    "Ranking",
    "SentenceTransformerEmbedder",
    "TaskHit",
    "extractive_summary",
]
