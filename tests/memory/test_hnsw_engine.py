"""The hnsw engine: recall against exact search, its files beside the replica, staleness, and when auto takes it."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import syncstore
from syncstore.memory import Memory, Ranking
from syncstore.memory.engines import hnsw_engine, hnsw_files

pytest.importorskip("faiss")

MODEL = "test-vectors"
DIM = 32


@pytest.fixture(autouse=True)
def walk_the_graph(monkeypatch):
    """Small sets are scored exactly by default; these tests are about the graph."""
    monkeypatch.setattr(hnsw_engine, "EXACT_BELOW", 0)


def fill(store, count, *, seed=1, agents=4):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    with store.transaction():
        for i, vector in enumerate(vectors):
            store.memory.add(f"agent-{i % agents}", f"memory {i}", embedding=vector, embedding_model=MODEL, importance=1 + i % 10)


def ids(memory, query, **options):
    options.setdefault("ranking", Ranking.SIMILARITY)
    return [h.memory.id for h in memory.search_vector(query, model=MODEL, k=options.pop("k", 10), record_access=False, **options)]


def test_the_graph_finds_nearly_every_exact_neighbour(store):
    fill(store, 3000)
    graph = Memory(store, engine="hnsw")
    try:
        assert graph.index(MODEL, DIM).name == "hnsw"
        rng = np.random.default_rng(9)
        found = []
        for query in rng.standard_normal((30, DIM)).astype(np.float32):
            exact = ids(store.memory, query)  # the numpy engine
            found.append(len(set(ids(graph, query)) & set(exact)) / 10)
            assert len(ids(graph, query, agent_id="agent-2")) == 10  # filtered during the walk: never short
        assert np.mean(found) >= 0.95
    finally:
        graph.close()


def test_few_passing_rows_are_scored_exactly(store, monkeypatch):
    monkeypatch.setattr(hnsw_engine, "EXACT_BELOW", 5_000)
    fill(store, 600, agents=3)
    graph = Memory(store, engine="hnsw")
    try:
        walks = []
        index = graph.index(MODEL, DIM)
        real_walk = index._walk
        index._walk = lambda *a: walks.append(1) or real_walk(*a)
        query = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
        for ranking in (Ranking.SIMILARITY, Ranking()):
            assert ids(graph, query, ranking=ranking, agent_id="agent-1", k=7) == ids(
                store.memory, query, ranking=ranking, agent_id="agent-1", k=7
            )
        assert walks == []
    finally:
        graph.close()


def test_the_graph_is_saved_beside_the_replica_and_loaded_by_the_next_process(replica_path):
    query = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)
    with syncstore.open(replica_path) as store:
        fill(store, 500)
        graph = Memory(store, engine="hnsw")
        first = ids(graph, query)
        graph.close()
        # Written while no hnsw index is open: the next one catches up from the feed.
        late = store.memory.add("agent-0", "late", embedding=query, embedding_model=MODEL)
    assert any(name.endswith(".faiss") for name in os.listdir(replica_path + "-memhnsw"))
    with syncstore.open(replica_path) as store:
        graph = Memory(store, engine="hnsw")
        index = graph.index(MODEL, DIM)
        assert index.loaded_from_disk
        assert index.size == 501
        assert ids(graph, query) == [late.id, *first[:9]]
        graph.close()


def test_files_of_another_replica_or_ahead_of_this_one_are_rebuilt(tmp_path):
    query = np.random.default_rng(6).standard_normal(DIM).astype(np.float32)
    first, second = str(tmp_path / "first.db"), str(tmp_path / "second.db")
    with syncstore.open(first) as store:
        fill(store, 200, seed=1)
        built = Memory(store, engine="hnsw")
        assert not built.index(MODEL, DIM).loaded_from_disk  # built and saved
        built.close()
        store.connection.execute("pragma wal_checkpoint(truncate)")
        shutil.copy(first, str(tmp_path / "backup.db"))
        fill(store, 50, seed=2)
        graph = Memory(store, engine="hnsw")
        assert graph.index(MODEL, DIM).loaded_from_disk
        graph.close()  # saved at a cursor past the backup's
    with syncstore.open(second) as store:
        fill(store, 30, seed=3)
        mine = ids(store.memory, query)
    shutil.copytree(first + "-memhnsw", second + "-memhnsw")
    with syncstore.open(second) as store:
        graph = Memory(store, engine="hnsw")
        assert not graph.index(MODEL, DIM).loaded_from_disk  # another replica's files
        assert ids(graph, query) == mine
        graph.close()
    # The backup is restored over the first replica: its files are ahead of it.
    shutil.copy(str(tmp_path / "backup.db"), first)
    for end in ("-wal", "-shm"):
        if os.path.exists(first + end):
            os.remove(first + end)
    with syncstore.open(first) as store:
        graph = Memory(store, engine="hnsw")
        index = graph.index(MODEL, DIM)
        assert not index.loaded_from_disk
        assert index.size == 200
        assert ids(graph, query) == ids(store.memory, query)
        graph.close()
    # Unreadable meta: rebuilt, not an error.
    folder = first + "-memhnsw"
    for name in os.listdir(folder):
        if name.endswith(".meta"):
            with open(os.path.join(folder, name), "wb") as f:
                f.write(b"not msgpack")
    with syncstore.open(first) as store:
        graph = Memory(store, engine="hnsw")
        assert not graph.index(MODEL, DIM).loaded_from_disk
        assert ids(graph, query) == ids(store.memory, query)
        graph.close()


def test_a_new_vector_takes_a_new_label_and_many_dead_labels_rebuild_the_graph(store, monkeypatch):
    monkeypatch.setattr(hnsw_engine, "STALE_MIN", 10)
    fill(store, 40)
    graph = Memory(store, engine="hnsw")
    try:
        index = graph.index(MODEL, DIM)
        rows = store.memory.list(limit=None)
        store.memory.update(rows[0].id, importance=9, tags=["kept"])  # same vector: same label
        graph.search_vector(np.ones(DIM), model=MODEL)
        assert index._graph.ntotal == 40 and index._dead == 0
        rng = np.random.default_rng(8)
        moved = {}

        def move(some):
            with store.transaction():
                for row in some:
                    moved[row.id] = rng.standard_normal(DIM).astype(np.float32)
                    store.update("agent_memory", row.id, {"embedding": moved[row.id].tobytes()})

        move(rows[:15])  # applied at commit
        assert (index._graph.ntotal, index._dead) == (55, 15)
        move(rows[15:25])  # 25 dead labels against 40 live ones: rebuilt
        assert (index._graph.ntotal, index._dead) == (40, 0)
        for memory_id, vector in moved.items():
            assert ids(graph, vector, k=1) == [memory_id]
        assert index.size == 40
    finally:
        graph.close()


def test_auto_takes_hnsw_from_the_documented_size(store):
    fill(store, 30)
    small = Memory(store)
    large = Memory(store, approximate_above=20)
    try:
        assert small.index(MODEL, DIM).name == "numpy"
        assert large.index(MODEL, DIM).name == "hnsw"
    finally:
        small.close()
        large.close()


def test_no_files_for_an_in_memory_replica():
    with syncstore.open(":memory:") as store:
        fill(store, 50)
        graph = Memory(store, engine="hnsw")
        assert graph.index(MODEL, DIM).folder is None
        assert len(ids(graph, np.ones(DIM, dtype=np.float32))) == 10
        graph.close()


def test_space_names_differ_by_model_and_dimensions():
    assert len({hnsw_files.space_name("a", 32), hnsw_files.space_name("a", 64), hnsw_files.space_name("b", 32)}) == 3
