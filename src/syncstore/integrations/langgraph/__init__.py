"""LangGraph on syncstore: a checkpoint saver and a long-term memory store.

    import syncstore
    from syncstore.integrations.langgraph import SyncstoreSaver, SyncstoreStore

    store = syncstore.open("agent.db")
    graph = builder.compile(checkpointer=SyncstoreSaver(store), store=SyncstoreStore(store))

Both write synced tables of the replica, so a graph's threads and memories
work offline and sync to PostgreSQL and to the tenant's other machines. The
saver is in :mod:`.checkpointer`, the store in :mod:`.store` (with its
namespaces, filters and vectors beside it); row ids in :mod:`.keys`. See
docs/langgraph.md. Needs the ``langgraph`` extra.
"""

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "syncstore.integrations.langgraph needs LangGraph: pip install 'syncstore[langgraph]'"
    ) from exc

from syncstore.integrations.langgraph.checkpointer import SyncstoreSaver
from syncstore.integrations.langgraph.store import SyncstoreStore

__all__ = ["SyncstoreSaver", "SyncstoreStore"]
