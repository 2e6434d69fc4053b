"""``SyncstoreStore``: LangGraph's long-term memory (``BaseStore``) in a syncstore replica.

    store = syncstore.open("agent.db")
    memory = SyncstoreStore(store, index={"fields": ["text"]})   # offline hashing embedder
    memory.put(("users", "alice"), "prefs", {"text": "likes short answers"})
    memory.search(("users",), query="how should I answer?", filter={"lang": "en"})

Items are rows of the synced table ``langgraph_store``: one per (namespace,
key), with a UUIDv5 id of both, so an item written on two replicas is one row
whose columns merge last-write-wins, and a delete is a tombstone that syncs.
Namespaces are stored as JSON arrays of their labels (:mod:`.namespaces`),
filters follow LangGraph's rules (:mod:`.filters`), and semantic search
embeds with syncstore's embedders or LangChain's and keeps the vectors in the
row (:mod:`.vectors`).

One ``batch`` reads first (every get, search and listing sees the store as
it was before the batch) and then writes its puts, and the TTL refreshes of
what it read, in one transaction. ``abatch`` embeds on the event loop (an
async embedder is awaited) and runs the rest in the store's worker thread.

TTL (``ttl={"default_ttl": minutes, "refresh_on_read": True, "omit_expired":
False}``): an item with a TTL expires that many minutes after its last write
(or read, when reads refresh). Expired items are deleted by
:meth:`SyncstoreStore.sweep_ttl` (or a sweeper thread, :meth:`start_ttl_sweeper`);
until then they are still returned unless ``omit_expired`` is set.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any, Iterable

import msgspec
import numpy as np
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)

from syncstore import schema
from syncstore.aio.worker import worker_for
from syncstore.errors import ValidationError
from syncstore.integrations.langgraph import filters, keys, namespaces
from syncstore.integrations.langgraph.vectors import Vectors

if TYPE_CHECKING:
    from syncstore.aio import AsyncStore
    from syncstore.store import Store

TABLE = "langgraph_store"
_ITEM = "id, namespace, key, value, created_at, updated_at, expires_at, ttl_minutes"
_decode_json = msgspec.json.decode
_DAY = 24 * 60  # minutes


class SyncstoreStore(BaseStore):
    """A LangGraph store on an open syncstore store (or ``syncstore.aio`` store).

    ``index``: LangGraph's index config (``dims``, ``embed``, ``fields``), where
    ``embed`` may also be a syncstore embedder; without ``embed`` the offline
    :class:`~syncstore.memory.HashingEmbedder` is used. ``embedding_model``
    names the vector space of an ``embed`` that is not a syncstore embedder
    (vectors are only compared within one space). ``ttl``: LangGraph's TTL config.
    """

    supports_ttl = True

    def __init__(
        self,
        store: Store | AsyncStore,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        embedding_model: str | None = None,
    ):
        self.store: Store = getattr(store, "store", store)
        self._worker = worker_for(self.store)
        self.vectors = Vectors(index, embedding_model=embedding_model) if index is not None else None
        self.index_config = self.vectors.config if self.vectors is not None else None
        self.ttl_config = ttl
        self._sweeper: threading.Thread | None = None
        self._stop_sweeping = threading.Event()

    # --- batches ----------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        plan = _Plan(self, ops)
        if self.vectors is not None:
            plan.embedded = self.vectors.embed_documents(plan.texts)
            plan.queries = {q: self.vectors.embed_query(q) for q in plan.query_texts}
        return plan.run()

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        plan = _Plan(self, ops)
        if self.vectors is not None:
            plan.embedded = await self.vectors.aembed_documents(plan.texts)
            plan.queries = {q: await self.vectors.aembed_query(q) for q in plan.query_texts}
        return await self._worker.run(plan.run)

    # --- TTL --------------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Delete the items whose TTL has run out (the deletes sync); returns how many."""
        now = schema.now_iso()
        with self.store.transaction():
            expired = self.store.query(f"select id from {TABLE} where expires_at <= ?", (now,))
            for row in expired:
                self.store.delete(TABLE, row["id"])
        return len(expired)

    async def asweep_ttl(self) -> int:
        return await self._worker.run(self.sweep_ttl)

    def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> threading.Thread:
        """Sweep in a background thread every ``sweep_interval_minutes`` (default:
        the TTL config's, else 5) until :meth:`stop_ttl_sweeper`."""
        interval = sweep_interval_minutes or (self.ttl_config or {}).get("sweep_interval_minutes") or 5
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ValidationError(f"sweep_interval_minutes must be a positive number, not {interval!r}")
        if self._sweeper is not None and self._sweeper.is_alive():
            return self._sweeper
        self._stop_sweeping.clear()

        def sweep() -> None:
            while not self._stop_sweeping.wait(interval * 60):
                try:
                    self.sweep_ttl()
                except Exception:  # a locked or closed replica: try again next time
                    import logging

                    logging.getLogger("syncstore.langgraph").exception("TTL sweep failed")

        self._sweeper = threading.Thread(target=sweep, name="syncstore-langgraph-ttl", daemon=True)
        self._sweeper.start()
        return self._sweeper

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper thread; whether it has stopped within ``timeout``."""
        self._stop_sweeping.set()
        if self._sweeper is None:
            return True
        self._sweeper.join(timeout)
        stopped = not self._sweeper.is_alive()
        if stopped:
            self._sweeper = None
        return stopped


class _Plan:
    """One batch: checked, its texts gathered for embedding, then run."""

    def __init__(self, owner: SyncstoreStore, ops: Iterable[Op]):
        self.owner = owner
        self.ops = list(ops)
        self.results: list[Result] = [None] * len(self.ops)
        self.puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        self.texts: list[str] = []
        self.fields: dict[tuple[tuple[str, ...], str], list[str]] = {}  # (namespace, key): labels of its texts
        self.query_texts: list[str] = []
        self.embedded: np.ndarray | None = None  # one row per text, in order
        self.queries: dict[str, np.ndarray] = {}
        vectors = owner.vectors
        for op in self.ops:
            if not isinstance(op, (GetOp, SearchOp, ListNamespacesOp, PutOp)):
                raise ValidationError(f"unknown store operation {type(op).__name__}")
            validate_op_namespace(op)
            if isinstance(op, PutOp):
                if op.value is not None and not isinstance(op.value, dict):
                    raise ValidationError(f"an item's value is a dict, not {type(op.value).__name__}", table=TABLE)
                _check_ttl(op.ttl)
                self.puts[(tuple(op.namespace), op.key)] = op  # the last put of a key wins
            elif isinstance(op, SearchOp):
                filters.check(op.filter)
                _check_page(op.limit, op.offset)
                if op.query and vectors is not None and op.query not in self.query_texts:
                    self.query_texts.append(op.query)
            elif isinstance(op, ListNamespacesOp):
                _check_page(op.limit, op.offset)
                if op.max_depth is not None and (isinstance(op.max_depth, bool) or not isinstance(op.max_depth, int) or op.max_depth < 1):
                    raise ValidationError(f"max_depth must be a positive whole number, not {op.max_depth!r}")
        if vectors is not None:
            for item, op in self.puts.items():
                if op.value is None or op.index is False:
                    continue
                found = vectors.texts(op.value, None if op.index is None else list(op.index))
                if found:
                    self.fields[item] = [label for label, _ in found]
                    self.texts.extend(text for _, text in found)

    # --- running (in the thread that owns the replica call) ---------------------

    def run(self) -> list[Result]:
        owner, store = self.owner, self.owner.store
        ttl = owner.ttl_config or {}
        self.omit_expired = bool(ttl.get("omit_expired", False))
        self.now = schema.now_iso()
        refresh: dict[str, float] = {}
        for i, op in enumerate(self.ops):
            if isinstance(op, GetOp):
                self.results[i] = self._get(op, refresh)
            elif isinstance(op, SearchOp):
                self.results[i] = self._search(op, refresh)
            elif isinstance(op, ListNamespacesOp):
                self.results[i] = self._list_namespaces(op)
        if (self.puts or refresh) and store.readonly:
            if self.puts:
                raise ValidationError("the replica is open read-only", table=TABLE)
            refresh = {}
        if self.puts or refresh:
            with store.transaction():
                self._refresh(refresh)
                self._write()
        return self.results

    def _expired(self, row: dict[str, Any]) -> bool:
        return self.omit_expired and row["expires_at"] is not None and row["expires_at"] <= self.now

    def _get(self, op: GetOp, refresh: dict[str, float]) -> Item | None:
        row_id = keys.item_id(namespaces.encode(op.namespace), op.key)
        rows = self.owner.store.query(f"select {_ITEM} from {TABLE} where id = ?", (row_id,))
        if not rows or self._expired(rows[0]):
            return None
        row = rows[0]
        if op.refresh_ttl and row["ttl_minutes"] is not None:
            refresh[row["id"]] = row["ttl_minutes"]
        return Item(**_item_fields(row))

    def _search(self, op: SearchOp, refresh: dict[str, float]) -> list[SearchItem]:
        vectors = self.owner.vectors
        scoring = bool(op.query) and vectors is not None
        clause, params = namespaces.prefix_sql(op.namespace_prefix)
        if self.omit_expired:
            clause += " and (expires_at is null or expires_at > ?)"
            params.append(self.now)
        columns = _ITEM + (", embeddings, embedding_model" if scoring else "")
        sql = f"select {columns} from {TABLE} where {clause} order by updated_at desc, id"
        wanted = filters.check(op.filter)
        if not wanted and not scoring:
            rows = self.owner.store.query(sql + " limit ? offset ?", (*params, op.limit, op.offset))
            found = [(row, None) for row in rows]
        else:
            rows = self.owner.store.query(sql, params)
            if wanted:
                rows = [row for row in rows if filters.passes(_decode_json(row["value"]), wanted)]
            if scoring:
                assert vectors is not None
                found = self._ranked(op, rows, vectors)
            else:
                found = [(row, None) for row in rows[op.offset : op.offset + op.limit]]
        if op.refresh_ttl:
            for row, _ in found:
                if row["ttl_minutes"] is not None:
                    refresh[row["id"]] = row["ttl_minutes"]
        return [SearchItem(**_item_fields(row), score=score) for row, score in found]

    def _ranked(self, op: SearchOp, rows: list[dict[str, Any]], vectors: Vectors) -> list[tuple[dict[str, Any], float | None]]:
        """The page of ``op``: scored items best first, then (on a page they leave
        short) items without a score, as LangGraph's in-memory store does."""
        scored, matrices, scoreless = [], [], []
        for row in rows:
            matrix = vectors.decode(row["embeddings"]) if row["embedding_model"] == vectors.model else None
            if matrix is None:
                scoreless.append(row)
            else:
                scored.append(row)
                matrices.append(matrix)
        scores = vectors.best_scores(self.queries[op.query], matrices)  # type: ignore[index]
        order = sorted(range(len(scored)), key=lambda i: -scores[i])  # stable: newest first among equals
        page: list[tuple[dict[str, Any], float | None]] = [
            (scored[i], float(scores[i])) for i in order[op.offset : op.offset + op.limit]
        ]
        if scoreless and len(page) < op.limit:
            page.extend((row, None) for row in scoreless[: op.limit - len(page)])
        return page

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        conditions = list(op.match_conditions or ())
        prefix: tuple[str, ...] = ()
        for condition in conditions:
            if condition.match_type == "prefix":
                prefix = namespaces.literal_prefix(condition.path)
                break
        clause, params = namespaces.prefix_sql(prefix)
        if self.omit_expired:
            clause += " and (expires_at is null or expires_at > ?)"
            params.append(self.now)
        found = set()
        for row in self.owner.store.query(f"select distinct namespace from {TABLE} where {clause}", params):
            namespace = namespaces.decode(row["namespace"])
            if all(namespaces.matches(namespace, c.match_type, c.path) for c in conditions):
                found.add(namespace if op.max_depth is None else namespace[: op.max_depth])
        return sorted(found)[op.offset : op.offset + op.limit]

    def _refresh(self, refresh: dict[str, float]) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        for row_id, minutes in refresh.items():
            if self.owner.store.get(TABLE, row_id) is not None:  # a put in this batch may delete it
                self.owner.store.update(TABLE, row_id, {"expires_at": _expiry(now, minutes)}, touch=False)

    def _write(self) -> None:
        store = self.owner.store
        vectors = self.owner.vectors
        now = dt.datetime.now(dt.timezone.utc)
        offset = 0
        for (namespace, key), op in self.puts.items():
            text = namespaces.encode(namespace)
            row_id = keys.item_id(text, key)
            exists = store.get(TABLE, row_id) is not None
            if op.value is None:
                if exists:
                    store.delete(TABLE, row_id)
                continue
            values: dict[str, Any] = {
                "value": op.value,
                "expires_at": None if op.ttl is None else _expiry(now, op.ttl),
                "ttl_minutes": op.ttl,
                "embeddings": None,
                "embedding_fields": None,
                "embedding_model": None,
                "embedding_dimensions": None,
            }
            labels = self.fields.get((namespace, key))
            if labels and vectors is not None and self.embedded is not None:
                rows = self.embedded[offset : offset + len(labels)]
                offset += len(labels)
                values.update(
                    embeddings=vectors.encode(rows),
                    embedding_fields=labels,
                    embedding_model=vectors.model,
                    embedding_dimensions=vectors.dims,
                )
            if exists:
                store.update(TABLE, row_id, values)
            else:
                store.insert(TABLE, {"id": row_id, "namespace": text, "key": key, **values})


def _item_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "namespace": namespaces.decode(row["namespace"]),
        "key": row["key"],
        "value": _decode_json(row["value"]),
        "created_at": schema.parse_timestamp(row["created_at"]),
        "updated_at": schema.parse_timestamp(row["updated_at"]),
    }


def _expiry(now: dt.datetime, minutes: float) -> str:
    return schema.format_timestamp(now + dt.timedelta(minutes=min(minutes, 1000 * 365 * _DAY)))


def _check_ttl(ttl: Any) -> None:
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl >= 0):
        raise ValidationError(f"ttl is a number of minutes, 0 or more, not {ttl!r}", table=TABLE, field="ttl_minutes")


def _check_page(limit: Any, offset: Any) -> None:
    for name, number in (("limit", limit), ("offset", offset)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValidationError(f"{name} must be a whole number, 0 or more; got {number!r}")
