"""The in-memory engine: every vector of one model in a float32 numpy matrix.

Exact search is one matrix-vector product over the rows that pass the filters
(filters are boolean masks over per-row arrays, so they cost microseconds),
then the ranking score and a partial sort. Filtering happens before ranking,
never after, so k matching rows always give k results.

The matrix holds unit-length rows, so the product is the cosine similarity.
Rows live in slots 0..n-1; removing a row moves the last row into its slot,
so the matrix stays dense. Memory used: ``n * dimensions * 4`` bytes plus a
few bytes per row.

It stays in step through the memory feed (:mod:`syncstore.memory.feed`):
:meth:`refresh` applies what changed since its cursor, whoever wrote it.

Compact storage (``storage=``): ``float16`` halves the matrix, ``int8``
quarters it (each row scaled so its largest component is 127, the scale kept
beside it). numpy has no fast products for either (its own run ~40x slower
than float32 here), so their products run on numkong's SIMD kernels (the
``vectors`` extra). Similarities are then those of the rounded vectors, so
the top k may differ from the exact one where scores are close:
benchmarks/vector_search.py measures recall and speed of each storage.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from syncstore import schema
from syncstore.errors import CapabilityError
from syncstore.memory import feed
from syncstore.shared.memory.filters import Filters
from syncstore.shared.memory.ranking import Ranking, top_k

if TYPE_CHECKING:
    from syncstore.store import Store

_TYPE_CODE = {name: code for code, name in enumerate(schema.MEMORY_TYPES)}
# A selective filter multiplies only its own rows; past this share of all
# rows one product over the whole matrix is cheaper than gathering rows.
_GATHER_SHARE = 0.25


class NumpyIndex:
    name = "numpy"

    def __init__(self, store: Store, *, model: str, dimensions: int, storage: str = "float32"):
        if storage not in _STORAGE_DTYPES:
            raise ValueError(f"storage must be one of {', '.join(_STORAGE_DTYPES)}")
        if storage != "float32":
            try:
                import numkong  # noqa: F401
            except ImportError:
                raise CapabilityError(f"{storage} storage needs numkong; install syncstore[vectors]") from None
        self.store = store
        self.model = model
        self.dimensions = dimensions
        self.storage = storage
        self._lock = threading.RLock()
        self._load()

    def _load(self) -> None:
        """Read every row of this vector space afresh."""
        conn = self.store.connection
        # Rows read inside an open write transaction may still roll back, and
        # their feed numbers be used again by other writes: such a load is
        # redone at the first refresh after the transaction ends.
        self._provisional = conn.in_transaction
        self._n = 0
        self._ids: list[str] = []
        self._slot: dict[str, int] = {}
        self._agent_code: dict[str, int] = {}
        self._tag_slots: dict[str, set[int]] = {}
        self._row_tags: list[tuple[str, ...]] = []
        self._matrix: np.ndarray | None = None
        self.cursor = feed.position(conn)
        self._allocate(max(1024, feed.count(conn, self.model)))
        for row in feed.all_rows(conn, self.model, self.dimensions):
            self._upsert(row)

    # --- storage ------------------------------------------------------------

    # (attribute, dtype) of the per-row arrays beside the matrix
    _COLUMNS = (
        ("_importance", np.int8),
        ("_active", np.bool_),
        ("_expires", np.float64),
        ("_touched", np.float64),
        ("_agent", np.int32),
        ("_type", np.int8),
        ("_scale", np.float32),  # int8 storage: the factor each row was multiplied by
    )

    def _allocate(self, capacity: int) -> None:
        """Make room for ``capacity`` rows, keeping the rows held so far."""
        old = self._matrix
        matrix = np.zeros((capacity, self.dimensions), dtype=_STORAGE_DTYPES[self.storage])
        if old is not None:
            matrix[: self._n] = old[: self._n]
        self._matrix = matrix
        for attribute, dtype in self._COLUMNS:
            array = np.zeros(capacity, dtype=dtype)
            if old is not None:
                array[: self._n] = getattr(self, attribute)[: self._n]
            setattr(self, attribute, array)

    def _arrays(self) -> list[np.ndarray]:
        return [self._matrix, *(getattr(self, attribute) for attribute, _ in self._COLUMNS)]

    @property
    def size(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the matrix dominates)."""
        return sum(a.nbytes for a in self._arrays())

    def _upsert(self, row: feed.IndexRow) -> None:
        slot = self._slot.get(row.id)
        if slot is None:
            if self._n == len(self._matrix):
                self._allocate(max(1024, len(self._matrix) * 2))
            slot = self._n
            self._n += 1
            self._ids.append(row.id)
            self._row_tags.append(())
            self._slot[row.id] = slot
        vector = np.frombuffer(row.vector, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        unit = vector / norm if norm > 0 else np.zeros_like(vector)
        if self.storage == "int8":
            largest = float(np.abs(unit).max()) if unit.size else 0.0
            scale = 127.0 / largest if largest > 0 else 1.0
            self._matrix[slot] = np.round(unit * scale)
            self._scale[slot] = scale
        else:
            self._matrix[slot] = unit
        self._importance[slot] = row.importance
        self._active[slot] = row.is_active
        self._expires[slot] = row.expires
        self._touched[slot] = row.touched
        self._agent[slot] = self._agent_code.setdefault(row.agent_id, len(self._agent_code))
        self._type[slot] = _TYPE_CODE.get(row.memory_type, -1)
        self._set_tags(slot, row.tags)

    def _set_tags(self, slot: int, tags: tuple[str, ...]) -> None:
        for tag in self._row_tags[slot]:
            members = self._tag_slots[tag]
            members.discard(slot)
            if not members:
                del self._tag_slots[tag]
        for tag in tags:
            self._tag_slots.setdefault(tag, set()).add(slot)
        self._row_tags[slot] = tags

    def _remove(self, memory_id: str) -> None:
        slot = self._slot.pop(memory_id, None)
        if slot is None:
            return
        self._set_tags(slot, ())
        last = self._n - 1
        if slot != last:
            moved = self._ids[last]
            tags = self._row_tags[last]
            self._set_tags(last, ())
            for array in self._arrays():
                array[slot] = array[last]
            self._ids[slot] = moved
            self._slot[moved] = slot
            self._set_tags(slot, tags)
        self._ids.pop()
        self._row_tags.pop()
        self._n -= 1

    # --- keeping in step ----------------------------------------------------

    def refresh(self) -> int:
        """Apply every change since the cursor; returns how many memories were looked at."""
        with self._lock:
            conn = self.store.connection
            if conn.in_transaction:
                # Uncommitted feed entries may roll back (see _load): a search
                # inside a write transaction sees memory as of the last commit.
                return 0
            if self._provisional:
                self._load()
                return self._n
            ids, cursor = feed.changed_since(conn, self.cursor)
            if not ids:
                return 0
            rows = feed.rows_for(conn, ids, self.model, self.dimensions)
            for memory_id in ids:
                row = rows.get(memory_id)
                if row is None:
                    self._remove(memory_id)
                else:
                    self._upsert(row)
            self.cursor = cursor
            return len(ids)

    def touch(self, memory_ids: list[str], when: float) -> None:
        """A local read makes these memories recent (see ranking)."""
        with self._lock:
            for memory_id in memory_ids:
                slot = self._slot.get(memory_id)
                if slot is not None and self._touched[slot] < when:
                    self._touched[slot] = when

    # --- search ---------------------------------------------------------------

    def _mask(self, filters: Filters) -> np.ndarray | None:
        """Rows that pass the filters (a boolean mask); None when none can."""
        n = self._n
        mask = np.ones(n, dtype=np.bool_)
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
            members = self._tag_slots.get(tag)
            if not members:
                return None
            has = np.zeros(n, dtype=np.bool_)
            has[np.fromiter(members, dtype=np.int64, count=len(members))] = True
            mask &= has
        return mask

    def search(self, query: np.ndarray, filters: Filters, ranking: Ranking, k: int) -> list[tuple[str, float, float]]:
        """``[(memory_id, score, similarity)]``, best first: the exact top ``k``."""
        with self._lock:
            n = self._n
            if n == 0 or k <= 0:
                return []
            mask = self._mask(filters)
            if mask is None:
                return []
            chosen = np.flatnonzero(mask)
            if chosen.size == 0:
                return []
            if chosen.size == n:
                similarity = self._similarity(None, query)
            elif chosen.size < _GATHER_SHARE * n:
                similarity = self._similarity(chosen, query)
            else:
                similarity = self._similarity(None, query)[chosen]
            importance = self._importance[:n] if chosen.size == n else self._importance[chosen]
            touched = self._touched[:n] if chosen.size == n else self._touched[chosen]
            rows = _recency_candidates(similarity, importance, ranking, k)
            if rows is not None:  # score only the rows that can still make the top k
                chosen, similarity, importance, touched = chosen[rows], similarity[rows], importance[rows], touched[rows]
            scores = ranking.scores(similarity, importance, touched, filters.now)
            ids = _Lookup(self._ids, chosen)
            best = top_k(scores, ids, k)
            return [(ids[i], float(scores[i]), float(similarity[i])) for i in best]


    def _similarity(self, rows: np.ndarray | None, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of the query with every row (``rows`` None) or with those rows."""
        matrix = self._matrix[: self._n] if rows is None else self._matrix[rows]
        if self.storage == "float32":
            return matrix @ query
        import numkong

        if self.storage == "float16":
            return np.asarray(numkong.cdist(query.astype(np.float16)[None], matrix, metric="dot"))[0]
        largest = float(np.abs(query).max())
        scale = 127.0 / largest if largest > 0 else 1.0
        quantized = np.round(query * scale).astype(np.int8)
        dots = np.asarray(numkong.cdist(quantized[None], matrix, metric="dot"))[0]
        row_scale = self._scale[: self._n] if rows is None else self._scale[rows]
        return dots / (row_scale.astype(np.float64) * scale)


_STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8}


def _recency_candidates(similarity: np.ndarray, importance: np.ndarray, ranking: Ranking, k: int) -> np.ndarray | None:
    """Positions whose score can still reach the top k, or None for all.

    The recency term (an exp2 per row) is the costly part of the score and lies
    in [0, recency]. Without it every row scores at least its ``base``; so the
    k-th best base is a floor for the k-th best score, and a row whose base
    plus the largest possible recency stays below that floor cannot make the
    top k. Only the others get the full score: the same result, exactly.
    """
    if not ranking.recency or similarity.size <= 4 * k:
        return None
    base = ranking.similarity * similarity.astype(np.float64)
    if ranking.importance:
        base += ranking.importance * (importance.astype(np.float64) - 1.0) / 9.0
    floor = np.partition(base, base.size - k)[base.size - k]
    # A hair of slack: the full score is computed apart, and may round differently.
    return np.flatnonzero(base >= floor - ranking.recency - 1e-9)


class _Lookup:
    """``ids[i]`` for positions in the chosen rows, without building a list of them all."""

    def __init__(self, ids: list[str], chosen: np.ndarray):
        self._ids = ids
        self._chosen = chosen

    def __getitem__(self, position: int) -> str:
        return self._ids[self._chosen[position]]

    def __len__(self) -> int:
        return len(self._chosen)
