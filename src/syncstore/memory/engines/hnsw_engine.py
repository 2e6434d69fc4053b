"""The approximate engine: an HNSW graph (faiss) over one vector space, for large memory sets.

Exact search reads every vector, so its cost grows with the rows: at a
million 384-dimensional memories a numpy product takes ~150 ms here. An HNSW
graph finds the nearest vectors by walking a few hundred of them (about a
millisecond), at the price of sometimes missing a true neighbour; recall is
set by how wide the walk is (``expansion``).

What a search does:

1. the filters become a mask over the graph's labels (numpy, from per-label
   columns kept beside the graph, as the numpy engine keeps them);
2. when at most ``exact_below`` rows pass (or no more than ``k``), those rows
   are scored exactly, as the numpy engine would: few candidates are cheaper
   to score than to find, and the answer is exact;
3. otherwise the graph is walked for the ``candidates`` nearest rows that
   pass the filters (faiss applies the mask during the walk, so a filter never
   leaves the search short), and these are ranked by the full formula
   (:mod:`syncstore.shared.memory.ranking`). With ``Ranking.SIMILARITY`` that
   is plain approximate nearest neighbours; with importance and recency in the
   score a row outside the nearest ``candidates`` cannot be ranked in, as with
   the server's pgvector search. If the walk returns fewer than ``k`` rows
   while more pass, the rows are scored exactly instead.

Keeping in step: like the other engines, :meth:`refresh` applies the memory
feed since its cursor. A memory whose vector is unchanged keeps its label (its
filter columns are rewritten); a new vector gets a new label, and the old
label is dead (masked out of every search). When dead labels outnumber
``stale_share`` of the live ones the graph is rebuilt from the replica.

Persistence (:mod:`.hnsw_files`): the graph and its labels are saved in
``<replica>-memhnsw/`` after a build, when unsaved changes pass a tenth of
the rows, and at close; the next process loads them and applies the feed
since their cursor instead of building again. Saved files from another
replica, another layout, or ahead of the replica (a restored backup) are
rebuilt. The graph holds float32 vectors: ``rows * dimensions * 4`` bytes,
plus ``connectivity * 8`` bytes of links per row.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from syncstore import schema
from syncstore.errors import CapabilityError
from syncstore.memory import feed
from syncstore.memory.engines import hnsw_files
from syncstore.memory.engines.numpy_engine import _GATHER_SHARE, _Lookup, _recency_candidates
from syncstore.shared.memory.filters import Filters
from syncstore.shared.memory.ranking import Ranking, top_k

if TYPE_CHECKING:
    from syncstore.store import Store

_TYPE_CODE = {name: code for code, name in enumerate(schema.MEMORY_TYPES)}

CONNECTIVITY = 16  # links per row in the graph (HNSW's M)
BUILD_EXPANSION = 80  # candidates considered while linking a new row (efConstruction)
EXPANSION = 128  # rows the search walk keeps in view (efSearch), at least ``candidates``
CANDIDATES = 100  # nearest rows ranked by the full formula
EXACT_BELOW = 5_000  # rows passing the filters at or below which a search is exact
STALE_SHARE = 0.5  # dead labels, as a share of live ones, that make the graph stale
STALE_MIN = 1_000  # ...and at least this many (a small graph walks past a few dead labels cheaply)
SAVE_SHARE = 0.1  # unsaved changes, as a share of rows, that make a refresh save


def available() -> str | None:
    """None when faiss can be imported, else why not."""
    try:
        import faiss  # noqa: F401
    except ImportError as exc:
        return f"faiss is not installed ({exc}); install syncstore[vectors]"
    return None


class HnswIndex:
    name = "hnsw"

    # (attribute, dtype) of the per-label columns beside the graph
    _COLUMNS = (
        ("_alive", np.bool_),
        ("_importance", np.int16),
        ("_active", np.bool_),
        ("_expires", np.float64),
        ("_touched", np.float64),
        ("_agent", np.int32),
        ("_type", np.int8),
    )

    def __init__(
        self,
        store: Store,
        *,
        model: str,
        dimensions: int,
        exact_below: int | None = None,
        candidates: int = CANDIDATES,
        expansion: int = EXPANSION,
        connectivity: int = CONNECTIVITY,
        folder: str | None | bool = True,
    ):
        problem = available()
        if problem:
            raise CapabilityError(problem)
        self.store = store
        self.model = model
        self.dimensions = dimensions
        self.exact_below = EXACT_BELOW if exact_below is None else exact_below
        self.candidates = candidates
        self.expansion = expansion
        self.connectivity = connectivity
        # Files only for a writable file replica (True: the default folder beside it).
        if folder is True:
            folder = None if store.readonly else hnsw_files.folder_for(store.path)
        self.folder: str | None = folder or None
        self._lock = threading.RLock()
        self.loaded_from_disk = False
        self.build_seconds = 0.0
        self._open()

    # --- state ----------------------------------------------------------------

    def _reset(self) -> None:
        import faiss

        self._graph = faiss.IndexHNSWFlat(self.dimensions, self.connectivity, faiss.METRIC_INNER_PRODUCT)
        self._graph.hnsw.efConstruction = BUILD_EXPANSION
        self._ids: list[str | None] = []
        self._label: dict[str, int] = {}
        self._agent_code: dict[str, int] = {}
        self._tag_labels: dict[str, set[int]] = {}
        self._row_tags: list[tuple[str, ...]] = []
        self._dead = 0
        self._unsaved = 0
        for attribute, dtype in self._COLUMNS:
            setattr(self, attribute, np.zeros(1024, dtype=dtype))

    @property
    def size(self) -> int:
        """Live rows held."""
        return len(self._label)

    @property
    def nbytes(self) -> int:
        """Bytes of vectors, links and per-label columns (an estimate of the graph's own)."""
        labels = len(self._ids)
        links = labels * self.connectivity * 2 * 4 * 1.1  # layer 0 holds 2M links; upper layers ~10% more
        return int(labels * self.dimensions * 4 + links + sum(getattr(self, a).nbytes for a, _ in self._COLUMNS))

    def _vectors(self) -> np.ndarray:
        """The graph's float32 vectors, as a view (valid until the next add)."""
        import faiss

        total = self._graph.ntotal
        if total == 0:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        storage = faiss.downcast_index(self._graph.storage)
        return faiss.rev_swig_ptr(storage.get_xb(), total * self.dimensions).reshape(total, self.dimensions)

    def _grow(self, needed: int) -> None:
        capacity = len(self._alive)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 2)
        for attribute, dtype in self._COLUMNS:
            old = getattr(self, attribute)
            array = np.zeros(capacity, dtype=dtype)
            array[: len(old)] = old
            setattr(self, attribute, array)

    def _set_columns(self, label: int, row: feed.IndexRow) -> None:
        self._importance[label] = row.importance
        self._active[label] = row.is_active
        self._expires[label] = row.expires
        self._touched[label] = row.touched
        self._agent[label] = self._agent_code.setdefault(row.agent_id, len(self._agent_code))
        self._type[label] = _TYPE_CODE.get(row.memory_type, -1)
        self._set_tags(label, row.tags)

    def _set_tags(self, label: int, tags: tuple[str, ...]) -> None:
        for tag in self._row_tags[label]:
            members = self._tag_labels[tag]
            members.discard(label)
            if not members:
                del self._tag_labels[tag]
        for tag in tags:
            self._tag_labels.setdefault(tag, set()).add(label)
        self._row_tags[label] = tags

    def _kill(self, memory_id: str) -> None:
        label = self._label.pop(memory_id, None)
        if label is None:
            return
        self._alive[label] = False
        self._ids[label] = None
        self._set_tags(label, ())
        self._dead += 1

    def _apply(self, rows: list[feed.IndexRow]) -> None:
        """Upsert rows: same vector, same label; a new vector goes in under a new label."""
        vectors = self._vectors()
        fresh: list[np.ndarray] = []
        for row in rows:
            vector = np.frombuffer(row.vector, dtype=np.float32)
            norm = float(np.linalg.norm(vector))
            vector = vector / norm if norm > 0 else np.zeros_like(vector)
            label = self._label.get(row.id)
            if label is not None and label < len(vectors) and np.array_equal(vectors[label], vector):
                self._set_columns(label, row)
                continue
            self._kill(row.id)
            label = len(self._ids)
            self._grow(label + 1)
            self._ids.append(row.id)
            self._row_tags.append(())
            self._label[row.id] = label
            self._alive[label] = True
            self._set_columns(label, row)
            fresh.append(vector)
        if fresh:
            self._graph.add(np.ascontiguousarray(np.vstack(fresh), dtype=np.float32))

    # --- building, loading, saving --------------------------------------------

    def _open(self) -> None:
        with self._lock:
            conn = self.store.connection
            if self.folder is not None and not conn.in_transaction and self._load():
                self.loaded_from_disk = True
                self.refresh()
                return
            self._build()

    def _build(self) -> None:
        """Read every row of this vector space afresh and link them into a new graph."""
        started = time.perf_counter()
        conn = self.store.connection
        self._reset()
        # As in the numpy engine: rows read inside an open write transaction
        # may roll back; such a build is redone at the first refresh after it.
        self._provisional = conn.in_transaction
        self.cursor = feed.position(conn)
        batch: list[feed.IndexRow] = []
        for row in feed.all_rows(conn, self.model, self.dimensions):
            batch.append(row)
            if len(batch) == 10_000:
                self._apply(batch)
                batch = []
        self._apply(batch)
        self.build_seconds = time.perf_counter() - started
        if not self._provisional:
            self._save()

    def _load(self) -> bool:
        import faiss

        found = hnsw_files.load(self.folder, self.model, self.dimensions)
        if found is None:
            return False
        saved, path = found
        conn = self.store.connection
        if saved.origin != self.store.site_id or saved.cursor > feed.position(conn) or saved.connectivity != self.connectivity:
            return False  # another replica's, or ahead of this one (a restored backup)
        try:
            graph = faiss.read_index(path)
        except RuntimeError:
            return False
        labels = len(saved.ids)
        if graph.ntotal != labels or graph.d != self.dimensions:
            return False
        self._reset()
        self._graph = graph  # (read_index gives the concrete class; a downcast copy would not own it)
        self._ids = saved.ids
        self._label = {memory_id: label for label, memory_id in enumerate(saved.ids) if memory_id is not None}
        self._dead = labels - len(self._label)
        self._agent_code = {agent: code for code, agent in enumerate(saved.agents)}
        self._row_tags = [tuple(tags) for tags in saved.tags]
        for label, tags in enumerate(self._row_tags):
            for tag in tags:
                self._tag_labels.setdefault(tag, set()).add(label)
        for attribute, dtype in self._COLUMNS:
            array = np.frombuffer(saved.columns[attribute], dtype=dtype).copy()
            if len(array) != labels:
                return False
            setattr(self, attribute, array)
        self._grow(max(labels, 1024))
        # Reads counted locally since the save make memories recent (see ranking).
        for memory_id, when in conn.execute(
            "select memory_id, unixepoch(last_accessed_at, 'subsec') from _ss_memory_access where last_accessed_at is not null"
        ):
            label = self._label.get(memory_id)
            if label is not None and when is not None and self._touched[label] < when:
                self._touched[label] = when
        self.cursor = saved.cursor
        self._provisional = False
        return True

    def _save(self) -> None:
        if self.folder is None:
            return
        import faiss

        labels = len(self._ids)
        agents = sorted(self._agent_code, key=self._agent_code.__getitem__)
        saved = hnsw_files.Saved(
            layout=hnsw_files.LAYOUT,
            model=self.model,
            dimensions=self.dimensions,
            origin=self.store.site_id,
            cursor=self.cursor,
            token="",
            connectivity=self.connectivity,
            ids=list(self._ids),
            agents=agents,
            tags=[list(tags) for tags in self._row_tags],
            columns={attribute: getattr(self, attribute)[:labels].tobytes() for attribute, _ in self._COLUMNS},
        )
        try:
            hnsw_files.save(self.folder, saved, lambda path: faiss.write_index(self._graph, path))
        except OSError:
            return  # a cache: the next process builds again
        self._unsaved = 0

    def close(self) -> None:
        """Save what changed since the last save, so the next process need not catch up as far."""
        with self._lock:
            if self._unsaved and not self._provisional:
                self._save()

    # --- keeping in step ------------------------------------------------------

    def refresh(self) -> int:
        """Apply every change since the cursor; returns how many memories were looked at."""
        with self._lock:
            conn = self.store.connection
            if conn.in_transaction:
                return 0  # uncommitted feed entries may roll back (see the numpy engine)
            if self._provisional:
                self._build()
                return self.size
            ids, cursor = feed.changed_since(conn, self.cursor)
            if not ids:
                return 0
            rows = feed.rows_for(conn, ids, self.model, self.dimensions)
            for memory_id in ids:
                if memory_id not in rows:
                    self._kill(memory_id)
            self._apply([rows[memory_id] for memory_id in ids if memory_id in rows])
            self.cursor = cursor
            self._unsaved += len(ids)
            if self._dead > STALE_SHARE * max(self.size, 1) and self._dead >= STALE_MIN:
                self._build()  # too many dead labels: the walk wastes its steps on them
            elif self._unsaved > SAVE_SHARE * max(self.size, 1_000):
                self._save()
            return len(ids)

    def touch(self, memory_ids: list[str], when: float) -> None:
        """A local read makes these memories recent (see ranking)."""
        with self._lock:
            for memory_id in memory_ids:
                label = self._label.get(memory_id)
                if label is not None and self._touched[label] < when:
                    self._touched[label] = when

    # --- search ---------------------------------------------------------------

    def _mask(self, filters: Filters) -> np.ndarray | None:
        """Labels that pass the filters (and are alive); None when none can."""
        n = len(self._ids)
        mask = self._alive[:n].copy()
        if not filters.include_inactive:
            mask &= self._active[:n]
        if not filters.include_expired:
            mask &= self._expires[:n] > filters.now
        if filters.agent_id is not None:
            code = self._agent_code.get(filters.agent_id)
            if code is None:
                return None
            mask &= self._agent[:n] == code
        if filters.memory_types is not None:
            mask &= np.isin(self._type[:n], [_TYPE_CODE[t] for t in filters.memory_types])
        if filters.min_importance is not None:
            mask &= self._importance[:n] >= filters.min_importance
        for tag in filters.tags:
            members = self._tag_labels.get(tag)
            if not members:
                return None
            has = np.zeros(n, dtype=np.bool_)
            has[np.fromiter(members, dtype=np.int64, count=len(members))] = True
            mask &= has
        return mask

    def search(self, query: np.ndarray, filters: Filters, ranking: Ranking, k: int) -> list[tuple[str, float, float]]:
        """``[(memory_id, score, similarity)]``, best first (see the module doc for how exact)."""
        with self._lock:
            if k <= 0 or not self._label:
                return []
            mask = self._mask(filters)
            if mask is None:
                return []
            passing = int(np.count_nonzero(mask))
            if passing == 0:
                return []
            if passing <= max(self.exact_below, k):
                return self._exact(query, np.flatnonzero(mask), filters, ranking, k)
            labels, similarity = self._walk(query, mask, passing, max(self.candidates, k))
            if len(labels) < k:
                return self._exact(query, np.flatnonzero(mask), filters, ranking, k)
            scores = ranking.scores(similarity, self._importance[labels], self._touched[labels], filters.now)
            ids = _Lookup(self._ids, labels)  # type: ignore[arg-type]
            return [(ids[i], float(scores[i]), float(similarity[i])) for i in top_k(scores, ids, k)]

    def _walk(self, query: np.ndarray, mask: np.ndarray, passing: int, wanted: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and similarities of the ``wanted`` nearest rows that pass ``mask``, by the graph."""
        import faiss

        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.expansion, wanted)
        if passing < len(self._ids):
            # faiss tests each visited label against this bitmap during the walk.
            bitmap = np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(self._ids), faiss.swig_ptr(bitmap))
            params.sel = selector
        distances, labels = self._graph.search(np.ascontiguousarray(query[None], dtype=np.float32), wanted, params=params)
        keep = labels[0] >= 0
        return labels[0][keep], distances[0][keep].astype(np.float64)

    def _exact(self, query: np.ndarray, chosen: np.ndarray, filters: Filters, ranking: Ranking, k: int) -> list[tuple[str, float, float]]:
        """Score every passing row, as the numpy engine does."""
        vectors = self._vectors()
        # A product over every vector beats gathering a large share of them first.
        similarity = (vectors @ query)[chosen] if chosen.size > _GATHER_SHARE * len(vectors) else vectors[chosen] @ query
        importance = self._importance[chosen]
        touched = self._touched[chosen]
        rows = _recency_candidates(similarity, importance, ranking, k)
        if rows is not None:
            chosen, similarity, importance, touched = chosen[rows], similarity[rows], importance[rows], touched[rows]
        scores = ranking.scores(similarity, importance, touched, filters.now)
        ids = _Lookup(self._ids, chosen)  # type: ignore[arg-type]
        return [(ids[i], float(scores[i]), float(similarity[i])) for i in top_k(scores, ids, k)]
