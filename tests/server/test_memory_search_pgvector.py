"""Memory search over HTTP on the embedded PostgreSQL 18, which has pgvector:
embeddings are ``vector``, the server builds an HNSW index for a searched
model in the background, searches exactly until it is valid, then from it.
Skips cleanly where the embedded PostgreSQL cannot start."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest

import syncstore
from syncstore.errors import CapabilityError
from syncstore.memory import Ranking
from syncstore.memory.remote import search_server
from syncstore.shared.memory.server_search import hnsw_index_name, index_plan

from syncstore_server.embedded import EmbeddedPostgres
from syncstore_server.http import HttpSettings

from .conftest import ServerThread
from .helpers import token

pytestmark = pytest.mark.slow

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda sigma omega river stone cloud".split()
TABLE = "syncstore.agent_memory"


@pytest.fixture(scope="module")
def pgvector_url():
    # As root the embedded PostgreSQL runs as another user, which must be able to
    # enter the data directory's parents (pytest's own tmp_path is private to root).
    root = Path(tempfile.mkdtemp(prefix="syncstore-search-pg-"))
    root.chmod(0o755)
    embedded = EmbeddedPostgres(root / "data")
    try:
        try:
            url = embedded.start()
        except CapabilityError as exc:
            pytest.skip(f"the embedded PostgreSQL cannot start here: {exc}")
        yield url
    finally:
        embedded.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(pgvector_url):
    running = ServerThread(pgvector_url, http=HttpSettings(hnsw_min_rows=100)).start()
    try:
        yield running
    finally:
        running.stop()


def wait_for_index_build(server) -> None:
    indexes = server.server._http.search.indexes
    asyncio.run_coroutine_threadsafe(indexes.wait(), server.loop).result(120)


def ids(found) -> list[str]:
    return [h.id for h in found.hits]


def test_hnsw_index_is_built_then_serves_searches_without_shortfall(server, pgvector_url, tmp_path):
    tok = token(f"t{uuid.uuid4().hex[:8]}")
    rng = np.random.default_rng(11)
    with syncstore.open(str(tmp_path / "a.db")) as store:
        with store.transaction():
            for i in range(400):
                text = " ".join(rng.choice(WORDS, size=4 + i % 4)) + f" n{i}"
                store.memory.add(f"agent-{i % 4}", text, importance=1 + i % 10, tags=[f"t{i % 3}"])
            rare = [store.memory.add("rare", f"rare {WORDS[i]} {WORDS[-i - 1]}").id for i in range(5)]
            gone = store.memory.add("agent-0", "alpha beta gamma delta the doomed one").id
            small = [store.memory.add("agent-0", "other model", embedding=v, embedding_model="small-16").id
                     for v in rng.standard_normal((5, 16)).astype(np.float32)]  # fmt: skip
        store.memory.delete(gone)
        store.sync(server.ws_url, token=tok)
        model = store.memory.embedder.model

        with psycopg.connect(pgvector_url) as conn:
            kind = conn.execute(
                "select format_type(atttypid, atttypmod) from pg_attribute "
                "where attrelid = 'syncstore.agent_memory'::regclass and attname = 'embedding'"
            ).fetchone()[0]
            name = hnsw_index_name(conn, model=model, dimensions=store.memory.embedder.dimensions, table=TABLE)
        assert kind == "vector"

        # No index yet: scored exactly, the same answer as the replica; the
        # search asks for the index to be built.
        query = "alpha beta gamma delta"
        first = search_server(server.ws_url, token=tok, query=query, k=10, ranking="similarity")
        assert first.strategy == "exact"
        local = store.memory.search(query, k=10, ranking=Ranking.SIMILARITY, engine="numpy", record_access=False)
        assert [h.score for h in first.hits] == pytest.approx([h.score for h in local], abs=1e-5)
        assert gone not in ids(first)
        wait_for_index_build(server)
        with psycopg.connect(pgvector_url) as conn:
            valid = conn.execute(
                "select indisvalid from pg_index where indexrelid = to_regclass(%s)", (f"syncstore.{name}",)
            ).fetchone()
            assert valid == (True,)
            # On a table this small a sequential scan is cheaper; forbid it to
            # prove the query's shape lets the index serve it.
            conn.execute("set enable_seqscan = off")
            plan = index_plan(conn, tenant="any", vector=np.ones(512), model=model, table=TABLE)
            assert f"Index Scan using {name}" in plan

        # From the index now: close to exact, never short, never a deleted row.
        recall = []
        for words in (query, "river stone cloud", "sigma omega kappa", "zeta eta theta iota"):
            near = search_server(server.ws_url, token=tok, query=words, k=10, ranking="similarity")
            exact = search_server(server.ws_url, token=tok, query=words, k=10, ranking="similarity", exact=True)
            assert near.strategy == "index" and exact.strategy == "exact" and len(near.hits) == 10
            assert gone not in ids(near)
            recall.append(len(set(ids(near)) & set(ids(exact))) / 10)
        assert np.mean(recall) >= 0.8
        # Heavy filtering (5 of 400 rows): the index walk goes on until it has them ...
        found = search_server(server.ws_url, token=tok, query=query, k=5, agent_id="rare")
        assert found.strategy == "index" and sorted(ids(found)) == sorted(rare)
        # ... and asked for more than match, the exact way proves there are no more.
        found = search_server(server.ws_url, token=tok, query=query, k=10, agent_id="rare")
        assert found.strategy == "exact" and sorted(ids(found)) == sorted(rare)
        filtered = search_server(server.ws_url, token=tok, query=query, k=25, tags=["t1"], min_importance=8)
        exact = search_server(server.ws_url, token=tok, query=query, k=25, tags=["t1"], min_importance=8, exact=True)
        assert len(filtered.hits) == len(exact.hits) == 25

        # A model with fewer rows than hnsw_min_rows stays exact and gets no index.
        other = search_server(server.ws_url, token=tok, vector=np.ones(16), model="small-16", k=10)
        assert other.strategy == "exact" and sorted(ids(other)) == sorted(small)
        wait_for_index_build(server)
        with psycopg.connect(pgvector_url) as conn:
            hnsw = conn.execute(
                "select count(*) from pg_indexes where schemaname = 'syncstore' and indexdef ilike '%using hnsw%'"
            ).fetchone()[0]
        assert hnsw == 1
