"""The ranking formula: its terms, its limits, and what it does to the order."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from syncstore.memory import Ranking
from syncstore.shared.memory.ranking import DAY, top_k

MODEL = "test-vectors"
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def test_the_formula_term_by_term():
    ranking = Ranking(similarity=2.0, importance=0.5, recency=0.25, half_life_days=10)
    now = 1_000_000_000.0
    scores = ranking.scores(
        np.array([0.5, 0.5, 0.5, 0.5]),
        np.array([1, 10, 1, 1]),
        np.array([now, now, now - 10 * DAY, now + 5 * DAY]),
        now,
    )
    assert scores == pytest.approx([1.0 + 0.25, 1.0 + 0.5 + 0.25, 1.0 + 0.125, 1.0 + 0.25])


def test_ceiling_bounds_every_score_at_or_below_a_similarity():
    ranking = Ranking()
    rng = np.random.default_rng(3)
    sims = rng.uniform(-1, 0.4, 1000)
    scores = ranking.scores(sims, rng.integers(1, 11, 1000), rng.uniform(0, 2e9, 1000), 2e9)
    assert scores.max() <= ranking.ceiling(0.4)


def test_weights_are_checked():
    for bad in (dict(similarity=0), dict(importance=-1), dict(recency=-0.1), dict(half_life_days=0)):
        with pytest.raises(ValueError):
            Ranking(**bad)


def test_top_k_breaks_ties_by_id_and_keeps_every_tied_row_in_play():
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1])
    ids = ["e", "a", "d", "b", "c"]
    assert [ids[i] for i in top_k(scores, ids, 3)] == ["a", "b", "d"]
    assert top_k(scores, ids, 0) == [] and len(top_k(scores, ids, 10)) == 5


@pytest.mark.parametrize("engine", ("numpy", "sqlite-vec"))
def test_importance_and_recency_reorder_equally_similar_memories(store, unit, engine):
    vector = unit()
    plain = store.memory.add("a", "plain", embedding=vector, embedding_model=MODEL, importance=2)
    vital = store.memory.add("a", "vital", embedding=vector, embedding_model=MODEL, importance=9)

    def order(ranking, now):
        hits = store.memory.search_vector(vector, model=MODEL, k=2, ranking=ranking, now=now, engine=engine, record_access=False)
        return [h.memory.id for h in hits]

    assert order(Ranking(recency=0), NOW) == [vital.id, plain.id]
    # Both last edited a month ago; a read now makes the plain one recent, and
    # with recency weighed heavily it leads a day later.
    month_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    for memory in (plain, vital):
        store.update("agent_memory", memory.id, {"updated_at": month_ago})
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    assert order(Ranking(importance=0.01, recency=1.0, half_life_days=1), later) == [vital.id, plain.id]
    store.memory.get(plain.id)
    assert order(Ranking(importance=0.01, recency=1.0, half_life_days=1), later) == [plain.id, vital.id]


def test_scores_reported_match_the_formula(store, unit):
    vector = unit()
    memory = store.memory.add("a", "x", embedding=vector, embedding_model=MODEL, importance=7)
    ranking = Ranking(similarity=1.0, importance=0.3, recency=0.0)
    (hit,) = store.memory.search_vector(vector, model=MODEL, ranking=ranking, record_access=False)
    assert hit.memory.id == memory.id
    assert hit.similarity == pytest.approx(1.0, abs=1e-5)
    assert hit.score == pytest.approx(1.0 + 0.3 * 6 / 9, abs=1e-5)
