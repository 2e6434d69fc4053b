"""The same memory search over the server's PostgreSQL, scoped to one tenant.

For the sync server's search endpoint: :func:`search_memory` takes a psycopg 3
connection, the tenant (from the caller's token, never from the request), a
query vector and its model, and the filters and ranking of local search
(:mod:`syncstore.shared.memory.filters`, :mod:`syncstore.shared.memory.ranking`);
:func:`search_filtered` is the same with the filters already checked. It reads
a table with the columns of ``schema.TABLES["agent_memory"]`` plus ``tenant``,
with JSON as ``jsonb``, times as ``timestamptz``, the active flag as
``boolean``, and the embedding as pgvector's ``vector``/``vector(n)`` or as
``bytea`` (float32), whichever the column is.

Three ways, chosen by what the table is:

- ``index`` (pgvector): the nearest ``candidates`` rows by cosine distance,
  which PostgreSQL serves from an HNSW index (:func:`create_hnsw_index`) with
  pgvector's iterative scan, so filters are applied while the index is walked,
  not after; then ranked by the formula. HNSW is approximate: a true
  neighbour can be missed (recall is tuned by ``hnsw.ef_search``). If fewer
  rows come back than were asked for, the index walk may have stopped early,
  so the search is run again the exact way: never fewer than ``k`` results
  when ``k`` rows match.
- ``exact`` (pgvector, or ``exact=True``): every matching row scored by the
  formula in SQL, top ``k`` by a top-N sort.
- ``scan`` (``bytea``, no pgvector): matching rows streamed in batches
  through a server-side cursor and scored with numpy, keeping a running top
  ``k``; exact, and the filters run in SQL first.

Rows of other embedding models are never compared: the model and dimensions
are part of every query's filters, and so is the vector's real length, since
the embedding and its ``embedding_dimensions`` are separate columns that
concurrent writers may set apart. Where the table has the sync server's
``_deleted`` column, deleted rows (tombstones, kept so an older write cannot
bring them back) are never results.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from typing import TYPE_CHECKING, Any, Sequence, Unpack

import msgspec
import numpy as np

from syncstore.errors import ValidationError
from syncstore.shared.embedders.base import normalize_rows
from syncstore.shared.memory.columns import COLUMNS
from syncstore.shared.memory.filters import FilterOptions, Filters, check_k, query_vector
from syncstore.shared.memory.ranking import DAY, Ranking, top_k

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_CANDIDATES",
    "RESULT_COLUMNS",
    "SCAN_BATCH",
    "Layout",
    "ServerHit",
    "ServerSearch",
    "create_hnsw_index",
    "embedding_type",
    "hnsw_index_name",
    "index_plan",
    "layout",
    "search_filtered",
    "search_memory",
]

RESULT_COLUMNS = COLUMNS  # every agent_memory column but the vector, as local search reads them

DEFAULT_CANDIDATES = 100
SCAN_BATCH = 2_000
_VECTOR_TYPE = re.compile(r"^vector(?:\((\d+)\))?$")


class Layout(msgspec.Struct, frozen=True):
    """What the search needs to know of the table's columns."""

    embedding: str  # vector(n), vector or bytea
    tombstones: bool  # it has the sync server's _deleted column


class ServerHit(msgspec.Struct, frozen=True, kw_only=True):
    row: dict[str, Any]  # RESULT_COLUMNS as psycopg returns them
    score: float
    similarity: float


class ServerSearch(msgspec.Struct, frozen=True, kw_only=True):
    hits: list[ServerHit]
    strategy: str  # "index", "exact" or "scan"


def embedding_type(conn: psycopg.Connection, *, table: str = "agent_memory") -> str:
    """How the table stores embeddings: ``vector(n)``, ``vector`` or ``bytea``."""
    return layout(conn, table=table).embedding


def layout(conn: psycopg.Connection, *, table: str = "agent_memory") -> Layout:
    """The embedding column's type, and whether rows can be tombstones."""
    found = dict(
        conn.execute(
            "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
            "where a.attrelid = to_regclass(%s) and a.attname in ('embedding', '_deleted') and not a.attisdropped",
            (table,),
        ).fetchall()
    )
    if "embedding" not in found:
        raise ValidationError(f"{table}: no such table, or it has no embedding column")
    return Layout(found["embedding"], found.get("_deleted") == "boolean")


def _table(name: str) -> Any:
    from psycopg import sql

    return sql.Identifier(*name.split("."))


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.9g}" for x in vector) + "]"


def _distance(kind: str, dimensions: int) -> Any:
    """The cosine-distance expression, written so that an HNSW index on it can serve it."""
    from psycopg import sql

    match = _VECTOR_TYPE.match(kind)
    if match and match.group(1):
        if int(match.group(1)) != dimensions:
            raise ValidationError(f"the embedding column holds vector({match.group(1)}), the query has {dimensions}")
        return sql.SQL("(embedding <=> {q}::vector)").format(q=sql.Placeholder("q"))
    return sql.SQL("((embedding::vector({n})) <=> {q}::vector({n}))").format(
        n=sql.Literal(dimensions), q=sql.Placeholder("q")
    )


def _model_rows(shape: Layout, model: str, dimensions: int) -> list[Any]:
    """The conditions that pick the live rows of one model: shared by queries
    and by the partial HNSW index, whose predicate they must imply. The model
    and dimensions are literals for that reason."""
    from psycopg import sql

    parts = [
        sql.SQL("embedding is not null"),
        sql.SQL("embedding_model = {}").format(sql.Literal(model)),
        sql.SQL("embedding_dimensions = {}").format(sql.Literal(dimensions)),
    ]
    # The vector's own length too: a row whose embedding_dimensions disagrees
    # with its vector must neither break a cast nor a numpy stack.
    if shape.embedding == "vector":
        parts.append(sql.SQL("vector_dims(embedding) = {}").format(sql.Literal(dimensions)))
    elif shape.embedding == "bytea":
        parts.append(sql.SQL("octet_length(embedding) = {}").format(sql.Literal(4 * dimensions)))
    if shape.tombstones:
        parts.append(sql.SQL("not _deleted"))
    return parts


def _where(filters: Filters, *, shape: Layout, tenant: str, model: str, dimensions: int) -> tuple[Any, dict[str, Any]]:
    from psycopg import sql

    parts = [sql.SQL("tenant = %(tenant)s"), *_model_rows(shape, model, dimensions)]
    params: dict[str, Any] = {"tenant": tenant}
    if filters.agent_id is not None:
        parts.append(sql.SQL("agent_id = %(agent_id)s"))
        params["agent_id"] = filters.agent_id
    if filters.memory_types is not None:
        parts.append(sql.SQL("memory_type = any(%(memory_types)s)"))
        params["memory_types"] = list(filters.memory_types)
    if filters.tags:
        parts.append(sql.SQL("tags @> %(tags)s::jsonb"))
        params["tags"] = msgspec.json.encode(list(filters.tags)).decode()
    if filters.min_importance is not None:
        parts.append(sql.SQL("importance >= %(min_importance)s"))
        params["min_importance"] = filters.min_importance
    if not filters.include_inactive:
        parts.append(sql.SQL("is_active"))
    if not filters.include_expired:
        parts.append(sql.SQL("(expires_at is null or expires_at > %(now)s)"))
    params["now"] = dt.datetime.fromtimestamp(filters.now, dt.timezone.utc)
    return sql.SQL(" and ").join(parts), params


def _touched_epoch() -> Any:
    from psycopg import sql

    return sql.SQL("extract(epoch from coalesce(greatest(updated_at, last_accessed_at), 'epoch'::timestamptz))::float8")


def _score(ranking: Ranking, similarity: Any) -> Any:
    """The ranking formula in SQL; the same as Ranking.scores."""
    from psycopg import sql

    terms = [sql.SQL("{w}::float8 * {s}").format(w=sql.Literal(ranking.similarity), s=similarity)]
    if ranking.importance:
        terms.append(sql.SQL("{w}::float8 * (importance - 1) / 9.0").format(w=sql.Literal(ranking.importance)))
    if ranking.recency:
        terms.append(
            sql.SQL(
                "{w}::float8 * power(2.0::float8, -greatest(extract(epoch from %(now)s::timestamptz)::float8 - {t}, 0) / {h}::float8)"
            ).format(w=sql.Literal(ranking.recency), t=_touched_epoch(), h=sql.Literal(ranking.half_life_days * DAY))
        )
    return sql.SQL(" + ").join(terms)


def search_memory(
    conn: psycopg.Connection,
    *,
    tenant: str,
    vector: np.ndarray | Sequence[float],
    model: str,
    k: int = 10,
    now: dt.datetime | None = None,
    ranking: Ranking | None = None,
    table: str = "agent_memory",
    exact: bool = False,
    candidates: int = DEFAULT_CANDIDATES,
    **filters: Unpack[FilterOptions],
) -> ServerSearch:
    """The top ``k`` memories of ``tenant`` for a query vector among those
    passing the filters (see :class:`FilterOptions` and the module doc)."""
    return search_filtered(
        conn, Filters.make(now=now, **filters), tenant=tenant, vector=vector, model=model, k=k,
        ranking=ranking, table=table, exact=exact, candidates=candidates,
    )


def search_filtered(
    conn: psycopg.Connection,
    filters: Filters,
    *,
    tenant: str,
    vector: np.ndarray | Sequence[float],
    model: str,
    k: int = 10,
    ranking: Ranking | None = None,
    table: str = "agent_memory",
    exact: bool = False,
    candidates: int = DEFAULT_CANDIDATES,
) -> ServerSearch:
    """:func:`search_memory` with filters already checked by :meth:`Filters.make`
    (as the sync server's request parsing does)."""
    if not isinstance(tenant, str) or not tenant:
        raise ValidationError("a search needs the tenant")
    check_k(k)
    query = query_vector(vector)
    ranking = ranking or Ranking()
    shape = layout(conn, table=table)
    if k == 0:
        return ServerSearch(hits=[], strategy="exact" if shape.embedding.startswith("vector") else "scan")
    with conn.transaction():
        if shape.embedding == "bytea":
            return ServerSearch(hits=_scan(conn, table, shape, query, filters, ranking, k, tenant, model), strategy="scan")
        if not _VECTOR_TYPE.match(shape.embedding):
            raise ValidationError(f"{table}.embedding is {shape.embedding}; expected vector or bytea")
        if not exact:
            hits = _nearest(conn, table, shape, query, filters, ranking, k, tenant, model, max(candidates, k))
            if hits is not None:
                return ServerSearch(hits=hits, strategy="index")
        return ServerSearch(hits=_exact(conn, table, shape, query, filters, ranking, k, tenant, model), strategy="exact")


def _columns() -> Any:
    from psycopg import sql

    return sql.SQL(", ").join(sql.Identifier(c) for c in RESULT_COLUMNS)


def _similarity(distance: Any) -> Any:
    from psycopg import sql

    # pgvector gives NaN for a zero vector (no direction): it scores 0.
    return sql.SQL("(1 - coalesce(nullif({d}, 'NaN'::float8), 1))").format(d=distance)


def _nearest_statement(shape, table, query, filters, ranking, k, tenant, model, wanted) -> tuple[Any, dict[str, Any]]:
    from psycopg import sql

    where, params = _where(filters, shape=shape, tenant=tenant, model=model, dimensions=query.size)
    params.update(q=_vector_literal(query), wanted=wanted, k=k)
    distance = _distance(shape.embedding, query.size)
    statement = sql.SQL(
        "with near as (select {cols}, {d} as distance from {t} where {w} order by {d} limit %(wanted)s) "
        "select *, {s} as similarity, {score} as score from near order by score desc, id limit %(k)s"
    ).format(
        cols=_columns(),
        d=distance,
        t=_table(table),
        w=where,
        s=_similarity(sql.SQL("distance")),
        score=_score(ranking, _similarity(sql.SQL("distance"))),
    )
    return statement, params


def _tune_index_walk(conn: psycopg.Connection, wanted: int) -> None:
    # Keep walking the HNSW graph until enough rows pass the filters, and
    # look at enough neighbours to return the candidates asked for.
    conn.execute("select set_config('hnsw.iterative_scan', 'relaxed_order', true)")
    conn.execute("select set_config('hnsw.ef_search', %s, true)", (str(min(max(40, wanted), 1000)),))


def _nearest(conn, table, shape, query, filters, ranking, k, tenant, model, wanted) -> list[ServerHit] | None:
    from psycopg.rows import dict_row

    statement, params = _nearest_statement(shape, table, query, filters, ranking, k, tenant, model, wanted)
    _tune_index_walk(conn, wanted)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(statement, params).fetchall()
    if len(rows) < k:
        # Fewer than k among the nearest: either fewer rows match, or the
        # index walk stopped early; the exact way tells which.
        return None
    return [_hit(row) for row in rows]


def index_plan(
    conn: psycopg.Connection,
    *,
    tenant: str,
    vector: np.ndarray | Sequence[float],
    model: str,
    k: int = 10,
    table: str = "agent_memory",
    candidates: int = DEFAULT_CANDIDATES,
    **filter_options: Any,
) -> str:
    """PostgreSQL's plan for the ``index`` strategy's query (EXPLAIN), so an
    operator can see whether the HNSW index serves it."""
    from psycopg import sql

    filters = Filters.make(**filter_options)
    query = query_vector(vector)
    shape = layout(conn, table=table)
    statement, params = _nearest_statement(shape, table, query, filters, Ranking(), k, tenant, model, max(candidates, k))
    with conn.transaction():
        _tune_index_walk(conn, max(candidates, k))
        rows = conn.execute(sql.SQL("explain ") + statement, params).fetchall()
    return "\n".join(row[0] for row in rows)


def _exact(conn, table, shape, query, filters, ranking, k, tenant, model) -> list[ServerHit]:
    from psycopg import sql
    from psycopg.rows import dict_row

    where, params = _where(filters, shape=shape, tenant=tenant, model=model, dimensions=query.size)
    params.update(q=_vector_literal(query), k=k)
    similarity = _similarity(_distance(shape.embedding, query.size))
    statement = sql.SQL(
        "select {cols}, {s} as similarity, {score} as score from {t} where {w} order by score desc, id limit %(k)s"
    ).format(cols=_columns(), s=similarity, score=_score(ranking, similarity), t=_table(table), w=where)
    with conn.cursor(row_factory=dict_row) as cur:
        return [_hit(row) for row in cur.execute(statement, params).fetchall()]


def _scan(conn, table, shape, query, filters, ranking, k, tenant, model) -> list[ServerHit]:
    from psycopg import sql
    from psycopg.rows import dict_row

    where, params = _where(filters, shape=shape, tenant=tenant, model=model, dimensions=query.size)
    statement = sql.SQL("select id, embedding, importance, {t} as touched from {tbl} where {w}").format(
        t=_touched_epoch(), tbl=_table(table), w=where
    )
    best_ids: list[str] = []
    best_scores = np.zeros(0)
    best_sims = np.zeros(0)
    with conn.cursor(name="syncstore_memory_scan") as cur:
        cur.itersize = SCAN_BATCH
        cur.execute(statement, params)
        while batch := cur.fetchmany(SCAN_BATCH):
            ids = [row[0] for row in batch]
            matrix = normalize_rows(np.vstack([np.frombuffer(row[1], dtype=np.float32) for row in batch]))
            sims = (matrix @ query).astype(np.float64)
            scores = ranking.scores(
                sims, np.array([row[2] or 0 for row in batch]), np.array([row[3] for row in batch]), filters.now
            )
            # Keep a running top k: the best of (previous best + this batch).
            all_ids = best_ids + ids
            all_scores = np.concatenate([best_scores, scores])
            all_sims = np.concatenate([best_sims, sims])
            keep = top_k(all_scores, all_ids, k)
            best_ids = [all_ids[i] for i in keep]
            best_scores = all_scores[keep]
            best_sims = all_sims[keep]
    if not best_ids:
        return []
    rows_statement = sql.SQL("select {cols} from {t} where tenant = %(tenant)s and id = any(%(ids)s)").format(
        cols=_columns(), t=_table(table)
    )
    with conn.cursor(row_factory=dict_row) as cur:
        rows = {str(row["id"]): row for row in cur.execute(rows_statement, {"tenant": tenant, "ids": best_ids})}
    return [
        ServerHit(row=rows[i], score=float(score), similarity=float(sim))
        for i, score, sim in zip(best_ids, best_scores, best_sims)
        if i in rows
    ]


def _hit(row: dict[str, Any]) -> ServerHit:
    score = row.pop("score")
    similarity = row.pop("similarity")
    row.pop("distance", None)
    return ServerHit(row=row, score=float(score), similarity=float(similarity if not math.isnan(similarity) else 0.0))


def _hnsw_index(conn: psycopg.Connection, model: str, dimensions: int, table: str) -> tuple[str, Any, Any]:
    """(name, indexed expression, predicate) of the HNSW index for one model."""
    from psycopg import sql

    shape = layout(conn, table=table)
    match = _VECTOR_TYPE.match(shape.embedding)
    if not match:
        raise ValidationError(f"{table}.embedding is {shape.embedding}: an HNSW index needs pgvector's vector type")
    if match.group(1):
        expression = sql.SQL("embedding vector_cosine_ops")
    else:
        expression = sql.SQL("(embedding::vector({n})) vector_cosine_ops").format(n=sql.Literal(dimensions))
    predicate = sql.SQL(" and ").join(_model_rows(shape, model, dimensions))
    # The name follows from what the index holds, so an index made with
    # another predicate is never taken for this one.
    text = f"{model}\0{dimensions}\0{predicate.as_string(conn)}"
    digest = hashlib.blake2b(text.encode(), digest_size=5).hexdigest()
    return f"{table.split('.')[-1]}_hnsw_{digest}", expression, predicate


def hnsw_index_name(conn: psycopg.Connection, *, model: str, dimensions: int, table: str = "agent_memory") -> str:
    """The name :func:`create_hnsw_index` gives the index for this model."""
    return _hnsw_index(conn, model, dimensions, table)[0]


def create_hnsw_index(
    conn: psycopg.Connection,
    *,
    model: str,
    dimensions: int,
    table: str = "agent_memory",
    concurrently: bool = False,
) -> str:
    """An HNSW index (cosine) for one embedding model; partial on that model's
    live rows, so models of other dimensions can share the table. Returns the
    index name. ``concurrently`` builds it without blocking writes (PostgreSQL's
    ``CREATE INDEX CONCURRENTLY``: the connection must be in autocommit mode)."""
    from psycopg import sql

    name, expression, predicate = _hnsw_index(conn, model, dimensions, table)
    conn.execute(
        sql.SQL("create index {how} if not exists {name} on {t} using hnsw ({e}) where {p}").format(
            how=sql.SQL("concurrently" if concurrently else ""),
            name=sql.Identifier(name),
            t=_table(table),
            e=expression,
            p=predicate,
        )
    )
    return name
