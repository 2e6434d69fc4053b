"""The numpy engine holding vectors as float16 or int8: nearly the same answers in a half or a quarter of the memory."""

from __future__ import annotations

import numpy as np
import pytest

from syncstore.errors import ValidationError
from syncstore.memory import Memory, Ranking

pytest.importorskip("numkong")

MODEL = "test-vectors"
DIM = 48


def fill(store, count):
    rng = np.random.default_rng(2)
    with store.transaction():
        for i, vector in enumerate(rng.standard_normal((count, DIM)).astype(np.float32)):
            store.memory.add(f"agent-{i % 3}", f"m {i}", embedding=vector, embedding_model=MODEL, importance=1 + i % 10)


def top(memory, query, **options):
    options.setdefault("ranking", Ranking.SIMILARITY)
    return [h for h in memory.search_vector(query, model=MODEL, engine="numpy", k=10, record_access=False, **options)]


@pytest.mark.parametrize("storage, least_recall, tolerance", [("float16", 0.98, 2e-3), ("int8", 0.9, 3e-2)])
def test_compact_storage_finds_nearly_the_same_memories_with_close_similarities(store, storage, least_recall, tolerance):
    fill(store, 800)
    compact = Memory(store, storage=storage)
    try:
        index = compact.index(MODEL, DIM, engine="numpy")
        assert index._matrix.dtype == np.dtype(storage)
        rng = np.random.default_rng(4)
        overlap = []
        for query in rng.standard_normal((20, DIM)).astype(np.float32):
            exact = top(store.memory, query)
            found = top(compact, query)
            overlap.append(len({h.memory.id for h in exact} & {h.memory.id for h in found}) / 10)
            exact_similarity = {h.memory.id: h.similarity for h in exact}
            for hit in found:
                if hit.memory.id in exact_similarity:
                    assert abs(hit.similarity - exact_similarity[hit.memory.id]) < tolerance
            assert len(top(compact, query, agent_id="agent-1")) == 10  # filters as before
        assert np.mean(overlap) >= least_recall
    finally:
        compact.close()


def test_int8_rows_keep_their_scale_when_removals_move_them(store):
    # Removing a row moves the last row into its slot; its scale must move with it.
    fill(store, 50)
    compact = Memory(store, storage="int8")
    try:
        rows = store.memory.list(limit=None, order_by="created_at", descending=False)
        compact.index(MODEL, DIM, engine="numpy")
        for row in rows[:10]:
            store.memory.delete(row.id)
        for row in rows[10:]:
            vector = store.memory.embedding(row.id)
            hit = top(compact, vector)[0]
            assert hit.memory.id == row.id
            assert hit.similarity == pytest.approx(1.0, abs=0.02)
    finally:
        compact.close()


def test_unknown_storage_is_refused():
    with pytest.raises(ValidationError, match="storage"):
        Memory(None, storage="float8")  # type: ignore[arg-type]
