"""Indexes stay in step with every write: local, synced from another replica, or by another connection."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import syncstore
from syncstore.memory import Memory

MODEL = "test-vectors"
ENGINES = ("numpy", "sqlite-vec", "hnsw")


@pytest.fixture(autouse=True)
def walk_the_graph(monkeypatch):
    """The hnsw engine scores small sets exactly; make it walk its graph even here."""
    from syncstore.memory.engines import hnsw_engine

    monkeypatch.setattr(hnsw_engine, "EXACT_BELOW", 0)


def ids(memory, query, engine, **options):
    return [h.memory.id for h in memory.search_vector(query, model=MODEL, engine=engine, k=options.pop("k", 50), record_access=False, **options)]


@pytest.mark.parametrize("engine", ENGINES)
def test_local_adds_updates_and_deletes_are_seen_at_once(store, unit, engine):
    query = unit()
    first = store.memory.add("a", "one", embedding=unit(), embedding_model=MODEL)
    assert ids(store.memory, query, engine) == [first.id]  # the index now exists
    index = store.memory.index(MODEL, 16, engine=engine)
    second = store.memory.add("a", "two", embedding=query, embedding_model=MODEL)
    assert index.size == 2  # applied by the commit notification, before any search
    assert ids(store.memory, query, engine, k=1) == [second.id]
    store.memory.update(second.id, importance=9, tags=["new"])
    assert ids(store.memory, query, engine, tags=["new"]) == [second.id]
    store.memory.deactivate(second.id)
    assert ids(store.memory, query, engine) == [first.id]
    store.memory.delete(first.id)
    assert ids(store.memory, query, engine) == []
    assert index.size == 1  # the inactive one is kept for include_inactive
    assert ids(store.memory, query, engine, include_inactive=True) == [second.id]


@pytest.mark.parametrize("engine", ENGINES)
def test_memories_synced_from_another_replica_show_up_change_and_vanish(store, other, unit, ship, engine):
    query = unit()
    mine = store.memory.add("a", "mine", embedding=unit(), embedding_model=MODEL)
    assert ids(store.memory, query, engine) == [mine.id]
    theirs = other.memory.add("a", "theirs", embedding=query, embedding_model=MODEL, tags=["remote"])
    shipped = ship(other, store)
    assert ids(store.memory, query, engine, k=1) == [theirs.id]
    assert store.memory.index(MODEL, 16, engine=engine).size == 2
    other.memory.update(theirs.id, tags=["changed"])
    shipped = ship(other, store, after=shipped)
    assert ids(store.memory, query, engine, tags=["changed"]) == [theirs.id]
    assert ids(store.memory, query, engine, tags=["remote"]) == []
    other.memory.delete(theirs.id)
    ship(other, store, after=shipped)
    assert ids(store.memory, query, engine) == [mine.id]


@pytest.mark.parametrize("engine", ENGINES)
def test_writes_by_another_connection_to_the_same_file_are_seen(store, replica_path, unit, engine):
    query = unit()
    assert ids(store.memory, query, engine) == []
    with syncstore.open(replica_path) as second_process:
        added = second_process.memory.add("a", "from elsewhere", embedding=query, embedding_model=MODEL)
    assert ids(store.memory, query, engine) == [added.id]


def test_raw_sql_writes_reach_the_indexes_through_the_feed(store, unit):
    # Even a write that bypasses the library (and so notifies nobody) is
    # caught up from the trigger-kept feed at the next search.
    query = unit()
    memory = store.memory.add("a", "text", embedding=unit(), embedding_model=MODEL)
    assert ids(store.memory, query, "numpy") == [memory.id]
    store.connection.execute("update agent_memory set agent_id = 'b' where id = ?", (memory.id,))
    assert ids(store.memory, query, "numpy", agent_id="b") == [memory.id]
    assert ids(store.memory, query, "sqlite-vec", agent_id="b") == [memory.id]


def test_the_sqlite_vec_sidecar_is_a_cache_rebuilt_when_removed_or_foreign(tmp_path, unit):
    path = str(tmp_path / "agent.db")
    query = unit()
    with syncstore.open(path) as store:
        kept = store.memory.add("a", "kept", embedding=query, embedding_model=MODEL)
        assert ids(store.memory, query, "sqlite-vec") == [kept.id]
    assert os.path.exists(path + "-memvec")
    for name in os.listdir(tmp_path):
        if name.startswith("agent.db-memvec"):
            os.remove(tmp_path / name)
    with syncstore.open(path) as store:
        assert ids(store.memory, query, "sqlite-vec") == [kept.id]
        store.memory.close()
    # A sidecar copied beside another replica belongs to the first one: rebuilt.
    other_path = str(tmp_path / "other.db")
    with syncstore.open(other_path) as other:
        mine = other.memory.add("a", "other's", embedding=query, embedding_model=MODEL)
        other.memory.close()
    shutil.copy(path + "-memvec", other_path + "-memvec")
    with syncstore.open(other_path) as other:
        assert ids(other.memory, query, "sqlite-vec") == [mine.id]
        other.memory.close()
    # A sidecar laid out by another version of the engine is rebuilt too.
    import apsw

    old = apsw.Connection(other_path + "-memvec")
    old.execute("pragma user_version = 999")
    old.close()
    with syncstore.open(other_path) as other:
        assert ids(other.memory, query, "sqlite-vec") == [mine.id]


def test_the_replica_stays_readable_without_the_extension(tmp_path, unit):
    # The vec0 tables live in the sidecar, so the replica opens in plain sqlite3.
    import sqlite3

    path = str(tmp_path / "agent.db")
    with syncstore.open(path) as store:
        store.memory.add("a", "text", embedding=unit(), embedding_model=MODEL)
        ids(store.memory, unit(), "sqlite-vec")
    conn = sqlite3.connect(path)
    tables = [name for (name,) in conn.execute("select name from sqlite_schema where type = 'table'")]
    for name in tables:
        conn.execute(f'select count(*) from "{name}"').fetchone()
    assert conn.execute("select count(*) from agent_memory").fetchone() == (1,)


def test_separate_memory_objects_on_one_store_agree(store, unit):
    query = unit()
    for _ in range(20):
        store.memory.add("a", "m", embedding=unit(), embedding_model=MODEL)
    second = Memory(store, engine="sqlite-vec")
    try:
        assert ids(second, query, None, k=5) == ids(store.memory, query, "numpy", k=5)
        assert np.isfinite([h.score for h in second.search_vector(query, model=MODEL)]).all()
    finally:
        second.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_search_inside_a_rolled_back_transaction_leaves_no_trace(store, unit, engine):
    # Feed numbers written in a transaction that rolls back are used again by
    # later writes; an index must not have skipped past them.
    query = unit()
    kept = store.memory.add("a", "kept", embedding=unit(), embedding_model=MODEL)
    assert ids(store.memory, query, engine) == [kept.id]  # the index exists before the transaction
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.memory.add("a", "rolled back", embedding=query, embedding_model=MODEL)
            assert kept.id in ids(store.memory, query, engine)  # memory as of the last commit
            raise RuntimeError("roll back")
    later = [store.memory.add("a", f"later {n}", embedding=unit(), embedding_model=MODEL).id for n in range(3)]
    assert set(ids(store.memory, query, engine)) == {kept.id, *later}


@pytest.mark.parametrize("engine", ENGINES)
def test_an_index_first_opened_inside_a_transaction_is_rebuilt_after_it(store, unit, engine):
    query = unit()
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.memory.add("a", "rolled back", embedding=query, embedding_model=MODEL)
            ids(store.memory, query, engine)  # opens the index mid-transaction
            raise RuntimeError("roll back")
    after = store.memory.add("a", "after", embedding=unit(), embedding_model=MODEL)
    assert ids(store.memory, query, engine) == [after.id]
