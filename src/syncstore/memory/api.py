"""``store.memory``: what an agent remembers, and finding it again.

Memories are rows of the synced table ``agent_memory``: every write here is
an ordinary replica write, so it syncs, and memories written on other
replicas arrive through sync and show up in search like local ones.

- :meth:`Memory.add` upserts by (agent, context key): adding with a key the
  agent already used rewrites that memory instead of piling up a new one.
- :meth:`Memory.search` embeds the query with this Memory's embedder and
  returns the exact top ``k`` among memories embedded with the same model.
- Reads (``get`` and search hits) are counted locally; see
  :mod:`syncstore.memory.access`.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, Unpack

import numpy as np

from syncstore import schema
from syncstore.errors import NotFoundError, ValidationError
from syncstore.memory import engines, feed
from syncstore.memory.access import AccessLog
from syncstore.memory.embedders import Embedder, HashingEmbedder, normalize_rows
from syncstore.shared.memory.filters import FilterOptions, Filters, check_k, query_vector
from syncstore.shared.memory.ranking import Ranking
from syncstore.memory.records import COLUMNS, TABLE, Hit, MemoryRecord, check_tags, from_row

if TYPE_CHECKING:
    from syncstore.memory.engines.sqlite_vec_engine import VecSidecar
    from syncstore.memory.task_search import TaskSearch
    from syncstore.replica.store import Change
    from syncstore.store import Store

Summarizer = Callable[[list[MemoryRecord]], str]

# Fields a caller may write through add/update (the rest are the library's).
_WRITABLE = (
    "agent_id",
    "memory_type",
    "content",
    "context_key",
    "importance",
    "tags",
    "context",
    "expires_at",
    "is_active",
    "metadata",
)


class Memory:
    """Agent memory over one store. ``store.memory`` is one with the defaults;
    make another to choose the embedder, engine or ranking (keyword-only)."""

    def __init__(
        self,
        store: Store,
        *,
        embedder: Embedder | None = None,
        engine: str = "auto",
        ranking: Ranking | None = None,
        memory_budget: int = engines.DEFAULT_MEMORY_BUDGET,
        approximate_above: int = engines.APPROXIMATE_ABOVE,
        storage: str = "float32",
    ):
        if engine not in engines.ENGINES:
            raise ValidationError(f"engine must be one of {', '.join(engines.ENGINES)}, not {engine!r}")
        if storage not in engines.STORAGES:
            raise ValidationError(f"storage must be one of {', '.join(engines.STORAGES)}, not {storage!r}")
        if isinstance(approximate_above, bool) or not isinstance(approximate_above, int) or approximate_above < 0:
            raise ValidationError("approximate_above must be a non-negative integer")
        self.store = store
        self.embedder = embedder or HashingEmbedder()
        self.engine = engine
        self.ranking = ranking or Ranking()
        self.memory_budget = memory_budget
        self.approximate_above = approximate_above
        self.storage = storage  # how the numpy engine holds vectors (float16 and int8 are approximate)
        self.access = AccessLog(store)
        self._indexes: dict[tuple[str, str, int], engines.Index] = {}
        self._sidecar: VecSidecar | None = None
        self._task_search: TaskSearch | None = None
        self._lock = threading.RLock()
        self._unsubscribe = store.subscribe(TABLE, self._on_change)

    def close(self) -> None:
        """Stop following the store and close the vector sidecar (the store stays open)."""
        self._unsubscribe()
        if self._task_search is not None:
            self._task_search.close()
        with self._lock:
            for index in self._indexes.values():
                closing = getattr(index, "close", None)
                if closing is not None:
                    closing()  # the hnsw engine saves what changed since its last save
            self._indexes.clear()
            if self._sidecar is not None:
                self._sidecar.close()
                self._sidecar = None

    def _on_change(self, changes: list[Change]) -> None:
        # Local writes and synced changes alike: bring every open index up to
        # date now, so the next search pays nothing. (A search also catches
        # up first, which covers writes by other processes.)
        with self._lock:
            indexes = list(self._indexes.values())
        for index in indexes:
            index.refresh()

    # --- records --------------------------------------------------------------

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.embedder.embed(list(texts))
        return normalize_rows(np.asarray(vectors, dtype=np.float32))

    def _vector_fields(self, vector: np.ndarray | Sequence[float], model: str) -> dict[str, Any]:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        return {"embedding": array.tobytes(), "embedding_model": model, "embedding_dimensions": int(array.size)}

    def add(
        self,
        agent_id: str,
        content: str,
        *,
        memory_type: str = "knowledge_base",
        context_key: str | None = None,
        importance: int = 5,
        tags: Iterable[str] | None = None,
        context: dict[str, Any] | None = None,
        expires_at: dt.datetime | str | None = None,
        ttl: dt.timedelta | None = None,
        metadata: dict[str, Any] | None = None,
        embedding: np.ndarray | Sequence[float] | None = None,
        embedding_model: str | None = None,
        id: str | None = None,
    ) -> MemoryRecord:
        """Remember ``content``; with a ``context_key`` the agent already used,
        rewrite that memory (and make it active again) instead.

        The content is embedded with this Memory's embedder unless a vector is
        given (then ``embedding_model`` names its space). ``ttl`` sets
        ``expires_at`` relative to now."""
        if not isinstance(content, str) or not content.strip():
            raise ValidationError("must not be empty", table=TABLE, field="content")
        if not isinstance(agent_id, str) or not agent_id:
            raise ValidationError("must not be empty", table=TABLE, field="agent_id")
        if ttl is not None:
            if expires_at is not None:
                raise ValidationError("give expires_at or ttl, not both", table=TABLE, field="expires_at")
            expires_at = dt.datetime.now(dt.timezone.utc) + ttl
        values: dict[str, Any] = {
            "agent_id": agent_id,
            "memory_type": memory_type,
            "content": content,
            "context_key": context_key,
            "importance": importance,
            "tags": check_tags(tags),
            "context": context or {},
            "expires_at": expires_at,
            "is_active": True,
            "metadata": metadata or {},
        }
        if embedding is not None:
            if not embedding_model:
                raise ValidationError("a given embedding needs its embedding_model", table=TABLE, field="embedding_model")
            values.update(self._vector_fields(normalize_rows(np.asarray(embedding, dtype=np.float32)), embedding_model))
        else:
            values.update(self._vector_fields(self._embed([content])[0], self.embedder.model))
        # Validate before taking the write lock, so a bad value costs no transaction.
        schema.validate_row(schema.table(TABLE), {k: v for k, v in values.items() if v is not None}, insert=False)
        with self.store.transaction():
            existing = self._by_key(agent_id, context_key) if context_key is not None else None
            if existing is None:
                if id is not None:
                    values["id"] = id
                memory_id = self.store.insert(TABLE, values)
            else:
                memory_id = existing
                self.store.update(TABLE, memory_id, values)
        return self.get(memory_id, record_access=False)

    def _by_key(self, agent_id: str, context_key: str) -> str | None:
        # Two replicas may have added the same key offline: the newest wins
        # the upsert (the same choice on every replica).
        found = self.store.connection.execute(
            "select id from agent_memory where agent_id = ? and context_key = ? "
            "order by updated_at desc, id desc limit 1",
            (agent_id, context_key),
        ).fetchone()
        return None if found is None else found[0]

    def _records(self, ids: list[str]) -> dict[str, MemoryRecord]:
        if not ids:
            return {}
        rows = self.store.query(
            f"select {', '.join(COLUMNS)} from agent_memory where id in (select value from json_each(?))",
            (schema.encode_json(ids),),
        )
        pending = self.access.pending(ids)
        out = {}
        for row in rows:
            count, accessed = pending.get(row["id"], (0, None))
            out[row["id"]] = from_row(row, pending=count, accessed=accessed)
        return out

    def find(self, memory_id: str, *, record_access: bool = True) -> MemoryRecord | None:
        record = self._records([memory_id]).get(memory_id)
        if record is not None and record_access:
            self._note_access([memory_id])
        return record

    def get(self, memory_id: str, *, record_access: bool = True) -> MemoryRecord:
        """One memory; NotFoundError when there is none. Counts as a read."""
        record = self.find(memory_id, record_access=record_access)
        if record is None:
            raise NotFoundError(TABLE, memory_id)
        return record

    def embedding(self, memory_id: str) -> np.ndarray | None:
        row = self.store.get(TABLE, memory_id)
        if row is None:
            raise NotFoundError(TABLE, memory_id)
        return None if row["embedding"] is None else np.frombuffer(row["embedding"], dtype=np.float32)

    def update(self, memory_id: str, **changes: Any) -> MemoryRecord:
        """Change some fields; new content is embedded again."""
        unknown = set(changes) - set(_WRITABLE)
        if unknown:
            raise ValidationError(f"cannot set {', '.join(sorted(unknown))}", table=TABLE)
        if not changes:
            raise ValidationError("nothing to update", table=TABLE)
        if "tags" in changes:
            changes["tags"] = check_tags(changes["tags"])
        if "content" in changes:
            if not isinstance(changes["content"], str) or not changes["content"].strip():
                raise ValidationError("must not be empty", table=TABLE, field="content")
            changes.update(self._vector_fields(self._embed([changes["content"]])[0], self.embedder.model))
        self.store.update(TABLE, memory_id, changes)
        return self.get(memory_id, record_access=False)

    def deactivate(self, memory_id: str) -> MemoryRecord:
        """Hide a memory from search and listings (kept, and synced, as inactive)."""
        return self.update(memory_id, is_active=False)

    def delete(self, memory_id: str) -> None:
        self.store.delete(TABLE, memory_id)

    def list(
        self,
        *,
        limit: int | None = 100,
        offset: int = 0,
        order_by: str = "created_at",
        descending: bool = True,
        now: dt.datetime | None = None,
        **filters: Unpack[FilterOptions],
    ) -> list[MemoryRecord]:
        """Memories passing the filters (see :class:`FilterOptions`), newest first
        by default. Not counted as reads."""
        where, params = Filters.make(now=now, **filters).sql("m")
        column = schema.table(TABLE).column(order_by).name
        sql = "select m.id from agent_memory m"
        if where:
            sql += " where " + " and ".join(where)
        sql += f" order by m.{column} {'desc' if descending else 'asc'}, m.id"
        if limit is not None:
            if limit < 0 or offset < 0:
                raise ValidationError("limit and offset must not be negative")
            sql += " limit ? offset ?"
            params += [limit, offset]
        ids = [row[0] for row in self.store.connection.execute(sql, params)]
        records = self._records(ids)
        return [records[i] for i in ids if i in records]

    def count(self) -> int:
        return self.store.count(TABLE)

    # --- search ---------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        now: dt.datetime | None = None,
        ranking: Ranking | None = None,
        engine: str | None = None,
        record_access: bool = True,
        **filters: Unpack[FilterOptions],
    ) -> list[Hit]:
        """The ``k`` best memories for ``query`` among those passing the filters
        (see :class:`FilterOptions`), best first; ``k`` of them whenever ``k``
        memories of this embedder's model pass (see :mod:`syncstore.shared.memory.ranking`
        for the order)."""
        if not isinstance(query, str):
            raise ValidationError("the query must be text")
        return self.search_vector(
            self._embed([query])[0],
            model=self.embedder.model,
            k=k,
            now=now,
            ranking=ranking,
            engine=engine,
            record_access=record_access,
            **filters,
        )

    def search_vector(
        self,
        vector: np.ndarray | Sequence[float],
        *,
        model: str,
        k: int = 10,
        now: dt.datetime | None = None,
        ranking: Ranking | None = None,
        engine: str | None = None,
        record_access: bool = True,
        **filters: Unpack[FilterOptions],
    ) -> list[Hit]:
        """As :meth:`search`, for a vector already made with ``model``."""
        check_k(k)
        checked = Filters.make(now=now, **filters)
        query = query_vector(vector)
        index = self.index(model, int(query.size), engine=engine)
        index.refresh()
        found = index.search(query, checked, ranking or self.ranking, k)
        records = self._records([memory_id for memory_id, _, _ in found])
        hits = [
            Hit(memory=records[memory_id], score=score, similarity=similarity)
            for memory_id, score, similarity in found
            if memory_id in records
        ]
        if record_access:
            self._note_access([hit.memory.id for hit in hits])
        return hits

    def index(self, model: str, dimensions: int, *, engine: str | None = None) -> engines.Index:
        """The engine's index of one vector space, opened (and loaded) on first use."""
        requested = engine or self.engine
        with self._lock:
            for name in ("hnsw", "numpy", "sqlite-vec") if requested == "auto" else (requested,):
                if (name, model, dimensions) in self._indexes:
                    return self._indexes[(name, model, dimensions)]
            chosen = engines.choose(
                requested,
                rows=feed.count(self.store.connection, model),
                dimensions=dimensions,
                vector_available=self.store.capabilities.vector,
                readonly=self.store.readonly,
                budget=self.memory_budget,
                approximate_above=self.approximate_above,
                hnsw_available=hnsw_engine_available(),
            )
            key = (chosen, model, dimensions)
            if key not in self._indexes:
                self._indexes[key] = self._open_index(chosen, model, dimensions)
            return self._indexes[key]

    def _open_index(self, name: str, model: str, dimensions: int) -> engines.Index:
        if name == "numpy":
            from syncstore.memory.engines.numpy_engine import NumpyIndex

            return NumpyIndex(self.store, model=model, dimensions=dimensions, storage=self.storage)
        if name == "hnsw":
            from syncstore.memory.engines.hnsw_engine import HnswIndex

            return HnswIndex(self.store, model=model, dimensions=dimensions)
        from syncstore.memory.engines.sqlite_vec_engine import SqliteVecIndex, VecSidecar

        if self._sidecar is None:
            self._sidecar = VecSidecar(self.store)
        return SqliteVecIndex(self.store, self._sidecar, model=model, dimensions=dimensions)

    def _note_access(self, ids: list[str]) -> None:
        if not ids or self.store.readonly:
            return
        when = dt.datetime.now(dt.timezone.utc)
        self.access.record(ids, at=schema.format_timestamp(when))
        with self._lock:
            indexes = list(self._indexes.values())
        for index in indexes:
            index.touch(ids, when.timestamp())

    def flush_access(self) -> int:
        """Fold locally counted reads into the synced columns (see :mod:`syncstore.memory.access`)."""
        return self.access.flush()

    # --- upkeep ---------------------------------------------------------------

    def consolidate(
        self,
        agent_id: str,
        *,
        summarizer: Summarizer | None = None,
        older_than: dt.timedelta = dt.timedelta(days=7),
        max_importance: int = 4,
        min_memories: int = 3,
        delete: bool = False,
        now: dt.datetime | None = None,
    ) -> MemoryRecord | None:
        """Fold an agent's old, unimportant memories into one ``context_summary``
        (see :mod:`syncstore.memory.consolidate`); None when there are too few."""
        from syncstore.memory.consolidate import consolidate

        return consolidate(
            self,
            agent_id,
            summarizer=summarizer,
            older_than=older_than,
            max_importance=max_importance,
            min_memories=min_memories,
            delete=delete,
            now=now,
        )

    def sweep(self, *, now: dt.datetime | None = None, delete: bool = False, agent_id: str | None = None) -> int:
        """Deactivate (or delete) expired memories; returns how many (see :mod:`syncstore.memory.expiry`)."""
        from syncstore.memory.expiry import sweep_expired

        return sweep_expired(self, now=now, delete=delete, agent_id=agent_id)

    def reembed(self, *, agent_id: str | None = None, only_missing: bool = False, batch_size: int = 64) -> int:
        """Embed memories again with this Memory's embedder (after changing models,
        or for rows that arrived without a vector); returns how many were written.
        Each batch is one transaction of ordinary writes, so the new vectors sync."""
        clauses = ["(embedding is null or embedding_model is null or embedding_model != ? or embedding_dimensions is null)"]
        params: list[Any] = [self.embedder.model]
        if only_missing:
            clauses = ["embedding is null"]
            params = []
        if agent_id is not None:
            clauses.append("agent_id = ?")
            params.append(agent_id)
        rows = self.store.query(f"select id, content from agent_memory where {' and '.join(clauses)} order by id", params)
        written = 0
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            vectors = self._embed([row["content"] or "" for row in batch])
            with self.store.transaction():
                for row, vector in zip(batch, vectors):
                    self.store.update(TABLE, row["id"], self._vector_fields(vector, self.embedder.model))
                    written += 1
        return written

    # --- tasks ------------------------------------------------------------------

    @property
    def task_search(self) -> TaskSearch:
        """Search over tasks (title and description) with this Memory's embedder."""
        with self._lock:
            if self._task_search is None:
                from syncstore.memory.task_search import TaskSearch

                self._task_search = TaskSearch(self.store, embedder=self.embedder)
            return self._task_search


def hnsw_engine_available() -> bool:
    from syncstore.memory.engines.hnsw_engine import available

    return available() is None
