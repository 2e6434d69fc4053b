"""Search: filters, exact top-k, no shortfall, one model at a time; the same answers from both engines."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from syncstore.errors import ExternalServiceError, ValidationError
from syncstore.memory import Memory, Ranking
from syncstore.memory.engines import sqlite_vec_engine
from syncstore.memory.remote import search_server

MODEL = "test-vectors"
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
ENGINES = ("numpy", "sqlite-vec", "hnsw")


@pytest.fixture(autouse=True)
def walk_the_graph(monkeypatch):
    """The hnsw engine scores small sets exactly; make it walk its graph even here."""
    from syncstore.memory.engines import hnsw_engine

    monkeypatch.setattr(hnsw_engine, "EXACT_BELOW", 0)


def add(store, unit, *, agent="a", kind="knowledge_base", tags=(), importance=5, vector=None, **extra):
    return store.memory.add(
        agent,
        extra.pop("content", "memory"),
        memory_type=kind,
        tags=list(tags),
        importance=importance,
        embedding=unit() if vector is None else vector,
        embedding_model=MODEL,
        **extra,
    )


def brute_force(store, query, *, ranking, k, where):
    """The expected answer: every live row, filtered in Python, scored by the formula."""
    rows = [r for r in store.memory.list(limit=None, include_inactive=True, include_expired=True) if where(r)]
    if not rows:
        return []
    sims = np.array([float(store.memory.embedding(r.id) @ query) for r in rows])
    touched = np.array([max(t.timestamp() for t in (r.updated_at, r.last_accessed_at) if t is not None) for r in rows])
    scores = ranking.scores(sims, np.array([r.importance for r in rows]), touched, NOW.timestamp())
    order = sorted(range(len(rows)), key=lambda i: (-scores[i], rows[i].id))
    return [rows[i].id for i in order[:k]]


def search(store, query, engine, **options):
    options.setdefault("now", NOW)
    options.setdefault("record_access", False)
    return [h.memory.id for h in store.memory.search_vector(query, model=MODEL, engine=engine, **options)]


@pytest.mark.parametrize("engine", ENGINES)
def test_exact_top_k_equals_brute_force(store, unit, engine):
    for i in range(60):
        add(store, unit, importance=1 + i % 10)
    query = unit()
    for ranking in (Ranking.SIMILARITY, Ranking()):
        expected = brute_force(store, query, ranking=ranking, k=7, where=lambda r: True)
        assert search(store, query, engine, k=7, ranking=ranking) == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_each_filter_applies(store, unit, engine):
    past = NOW - dt.timedelta(days=1)
    future = NOW + dt.timedelta(days=1)
    rows = {
        "other_agent": add(store, unit, agent="b"),
        "conversation": add(store, unit, kind="conversation"),
        "tagged_xy": add(store, unit, tags=["x", "y"]),
        "tagged_x": add(store, unit, tags=["x"]),
        "important": add(store, unit, importance=9),
        "expired": add(store, unit, expires_at=past),
        "expires_later": add(store, unit, expires_at=future),
        "inactive": add(store, unit),
    }
    store.memory.deactivate(rows["inactive"].id)
    ids = {name: m.id for name, m in rows.items()}
    query = unit()

    def found(**filters):
        return set(search(store, query, engine, k=50, **filters))

    everything_live = set(ids.values()) - {ids["expired"], ids["inactive"]}
    assert found() == everything_live
    assert found(agent_id="b") == {ids["other_agent"]}
    assert found(memory_type="conversation") == {ids["conversation"]}
    assert found(memory_type=["conversation", "knowledge_base"]) == everything_live
    assert found(tags=["x"]) == {ids["tagged_xy"], ids["tagged_x"]}
    assert found(tags=["x", "y"]) == {ids["tagged_xy"]}
    assert found(tags=["nope"]) == set()
    assert found(agent_id="nobody") == set()
    assert found(min_importance=9) == {ids["important"]}
    assert ids["expired"] in found(include_expired=True)
    assert ids["inactive"] in found(include_inactive=True)
    assert ids["expires_later"] not in found(now=future + dt.timedelta(seconds=1))


@pytest.mark.parametrize("engine", ENGINES)
def test_no_shortfall_when_most_rows_are_filtered_out(store, unit, engine):
    # The nearest rows to the query all fail the filter; the few that pass are far.
    query = unit()
    with store.transaction():
        for _ in range(300):
            add(store, unit, agent="noise", vector=query + 0.01 * unit())
        wanted = [add(store, unit, agent="rare", tags=["keep"]).id for _ in range(12)]
    for k in (1, 5, 12):
        assert len(search(store, query, engine, k=k, agent_id="rare")) == k
        assert len(search(store, query, engine, k=k, tags=["keep"])) == k
    assert set(search(store, query, engine, k=50, agent_id="rare")) == set(wanted)  # all of them, no more


@pytest.mark.parametrize("engine", ENGINES)
def test_only_vectors_of_the_query_model_are_compared(store, unit, engine):
    mine = add(store, unit)
    store.memory.add("a", "other model", embedding=unit(), embedding_model="another-model")
    store.memory.add("a", "other size", embedding=unit(32), embedding_model=MODEL)
    assert search(store, unit(), engine, k=10) == [mine.id]


def test_both_engines_return_the_same_ids(store, unit):
    with store.transaction():
        for i in range(400):
            add(store, unit, agent=f"agent-{i % 3}", kind=("conversation", "knowledge_base")[i % 2], tags=[f"t{i % 4}"], importance=1 + i % 10)
    for _ in range(5):
        query = unit()
        for options in (
            dict(k=10),
            dict(k=10, ranking=Ranking.SIMILARITY),
            dict(k=25, agent_id="agent-1", min_importance=4),
            dict(k=5, tags=["t2"], memory_type="conversation"),
        ):
            assert search(store, query, "numpy", **options) == search(store, query, "sqlite-vec", **options)


def test_sqlite_vec_widens_then_scans_when_its_neighbour_limit_is_too_small(store, unit, monkeypatch):
    # Shrink vec0's neighbour limit so that the widening loop and the final
    # full scan both run on a small table: ten rows close to the query with
    # the lowest importance, the rest scattered with every importance. By
    # similarity alone the first ask settles it; a little weight on importance
    # needs a wider ask; a lot of weight needs every row.
    monkeypatch.setattr(sqlite_vec_engine, "KNN_LIMIT", 30)
    monkeypatch.setattr(sqlite_vec_engine, "_FIRST_ASK", 2)
    scans = []
    real_scan = sqlite_vec_engine.SqliteVecIndex._scan
    monkeypatch.setattr(sqlite_vec_engine.SqliteVecIndex, "_scan", lambda self, *a: scans.append(1) or real_scan(self, *a))
    query = unit()
    with store.transaction():
        for _ in range(10):
            add(store, unit, importance=1, vector=query + 0.05 * unit())
        for i in range(70):
            add(store, unit, importance=1 + i % 10)
    for ranking, scanned in ((Ranking.SIMILARITY, 0), (Ranking(importance=0.3, recency=0.0), 0), (Ranking(importance=2.0, recency=0.0), 1)):
        scans.clear()
        assert search(store, query, "sqlite-vec", k=2, ranking=ranking) == search(store, query, "numpy", k=2, ranking=ranking)
        assert len(scans) == scanned, ranking


def test_zero_vectors_score_zero_similarity_in_both_engines(store, unit):
    zero = add(store, unit, vector=np.zeros(16, dtype=np.float32))
    for engine in ENGINES:
        assert search(store, unit(), engine, k=5) == [zero.id]


def test_k_zero_and_bad_arguments(store, unit):
    add(store, unit)
    assert search(store, unit(), "numpy", k=0) == []
    with pytest.raises(ValueError):
        search(store, unit(), "numpy", k=-1)
    with pytest.raises(ValueError):
        search(store, unit(), "numpy", memory_type="diary")
    with pytest.raises(ValueError):
        search(store, unit(), "warp-drive")
    with pytest.raises(ValueError):
        store.memory.search_vector([np.nan] * 16, model=MODEL)


def test_filters_are_refused_alike_by_search_listing_and_the_server_client(store, unit):
    """One check of the filters (Filters.make) serves every entry point, and its
    errors name the argument; the HTTP client refuses before sending anything."""
    add(store, unit)
    nowhere = "http://127.0.0.1:9"  # nothing listens: a request sent would fail as ExternalServiceError
    entry_points = {
        "search": lambda **bad: store.memory.search("memory", **bad),
        "search_vector": lambda **bad: store.memory.search_vector(unit(), model=MODEL, **bad),
        "list": lambda **bad: store.memory.list(**bad),
        "search_server": lambda **bad: search_server(nowhere, token="t", query="memory", **bad),
    }
    cases = (({"memory_type": "diary"}, "memory_type"), ({"min_importance": "5"}, "min_importance"), ({"tags": [3]}, "tags"))
    for name, call in entry_points.items():
        for bad, field in cases:
            with pytest.raises(ValidationError) as caught:
                call(**bad)
            assert caught.value.field == field, (name, bad)
        with pytest.raises(TypeError, match="agnet_id"):
            call(agnet_id="a")
    with pytest.raises(ValidationError) as caught:
        store.memory.list(now=dt.datetime(2030, 1, 1))
    assert caught.value.field == "now"
    with pytest.raises(ValidationError) as caught:
        search_server(nowhere, token="t", query="memory", ranking="loudest")
    assert caught.value.field == "ranking"
    with pytest.raises(TypeError):  # the server's clock decides expiry, not the caller's
        search_server(nowhere, token="t", query="memory", now=NOW)
    with pytest.raises(ExternalServiceError):  # good filters do go out
        search_server(nowhere, token="t", query="memory", memory_type=["conversation"], tags="x", timeout=2)


def test_auto_takes_sqlite_vec_when_vectors_exceed_the_memory_budget(store, unit):
    for _ in range(5):
        add(store, unit)
    small = Memory(store, memory_budget=10)
    try:
        assert small.index(MODEL, 16).name == "sqlite-vec"
        assert Memory(store).index(MODEL, 16).name == "numpy"
    finally:
        small.close()
