"""Memory search for the HTTP endpoint: a checked request, one tenant, one answer.

The search itself is :func:`syncstore.shared.memory.server_search.search_filtered`
(the filters, ranking and no-shortfall promise of local search), over
``syncstore.agent_memory`` with the tenant from the caller's token. It is
synchronous psycopg with numpy scoring (the exact scan where embeddings are
``bytea``), so it runs in worker threads on a small pool of its own: scoring
never stalls the event loop that serves the websockets, and ``pool_size``
bounds how many searches run at once (more wait up to ``wait_s``, then get
"busy"). Each statement is cut off after ``statement_timeout_s``.

Where pgvector is, searches use a model's HNSW index once it exists
(:mod:`syncstore_server.memory_index` builds it in the background) and score
every matching row exactly until then; ``exact=true`` always scores exactly.

Before searching, the model is checked against the tenant's rows: a model
no live memory of the tenant carries, or a vector of other dimensions than
the model's, is the caller's mistake and is answered as one. A search writes
nothing (the server keeps no access counts: replicas do).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import numpy as np
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from syncstore import schema
from syncstore.errors import SyncError, ValidationError
from syncstore.shared.memory import server_search

from syncstore_server.memory_index import DEFAULT_MAX_INDEXES, DEFAULT_MIN_ROWS, HnswIndexes
from syncstore_server.memory_query import DEFAULT_MAX_K, SearchRequest, embed_text
from syncstore_server.tables import SCHEMA

log = logging.getLogger("syncstore.server.memory_search")

TABLE = f"{SCHEMA}.{schema.TABLES['agent_memory'].name}"


class MemorySearch:
    """``await search(tenant, request)`` -> the JSON-ready answer; ``await close()``."""

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 2,
        wait_s: float = 5.0,
        statement_timeout_s: float = 10.0,
        max_k: int = DEFAULT_MAX_K,
        hnsw: bool = True,
        hnsw_min_rows: int = DEFAULT_MIN_ROWS,
        hnsw_max_indexes: int = DEFAULT_MAX_INDEXES,
    ):
        self.max_k = max_k
        self.wait_s = wait_s
        self._timeout_ms = str(int(statement_timeout_s * 1000))
        # Opened at the first search: a server nobody searches holds no extra connections.
        self._pool = ConnectionPool(
            database_url,
            min_size=0,
            max_size=pool_size,
            kwargs={"autocommit": True, "application_name": "syncstore-server-search"},
            configure=self._configure,
            open=False,
            name="syncstore-search",
            num_workers=1,
        )
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._indexes = None
        if hnsw:
            self._indexes = HnswIndexes(database_url, table=TABLE, min_rows=hnsw_min_rows, max_indexes=hnsw_max_indexes)
        self._vector_column: bool | None = None  # pgvector's type for embeddings? learnt at the first search

    @property
    def indexes(self) -> HnswIndexes | None:
        return self._indexes

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute("select set_config('statement_timeout', %s, false)", (self._timeout_ms,))

    async def search(self, tenant: str, request: SearchRequest) -> dict[str, Any]:
        """The top ``k`` memories of ``tenant``; ValidationError for a request
        that cannot be answered (naming the field), SyncError when the
        database is busy or unreachable."""
        vector = embed_text(request)
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    await asyncio.to_thread(self._pool.open, wait=False)
                    self._opened = True
        body, wanted = await asyncio.to_thread(self._run, tenant, request, vector)
        if wanted and self._indexes is not None:
            self._indexes.request(request.model, int(vector.size))
        return body

    def _run(self, tenant: str, request: SearchRequest, vector: np.ndarray) -> tuple[dict[str, Any], bool]:
        try:
            with self._pool.connection(timeout=self.wait_s) as conn:
                return self._search_on(conn, tenant, request, vector)
        except PoolTimeout:
            raise SyncError("the server is busy with other searches; try again shortly") from None
        except pg_errors.QueryCanceled:
            raise SyncError("the search took too long and was stopped") from None
        except psycopg.OperationalError as exc:
            log.warning("memory search: database unavailable (%s)", type(exc).__name__)
            raise SyncError("the database is unavailable") from None

    def _search_on(
        self, conn: psycopg.Connection, tenant: str, request: SearchRequest, vector: np.ndarray
    ) -> tuple[dict[str, Any], bool]:
        dimensions = int(vector.size)
        _check_model(conn, tenant, request.model, dimensions)
        if self._vector_column is None:
            self._vector_column = server_search.layout(conn, table=TABLE).embedding.startswith("vector")
        exact, wanted = request.exact, False
        if self._vector_column and not exact:
            # Without a valid index the nearest-first query would rank only
            # the candidates it read anyway: score every row instead.
            if self._indexes is None or not self._indexes.ready(conn, request.model, dimensions):
                exact, wanted = True, self._indexes is not None
        found = server_search.search_filtered(
            conn,
            request.filters,
            tenant=tenant,
            vector=vector,
            model=request.model,
            k=request.k,
            ranking=request.ranking,
            table=TABLE,
            exact=exact,
        )
        body = {
            "model": request.model,
            "dimensions": dimensions,
            "k": request.k,
            "strategy": found.strategy,
            "hits": [
                {"id": hit.row["id"], "score": hit.score, "similarity": hit.similarity, "memory": _memory(hit.row)}
                for hit in found.hits
            ],
        }
        return body, wanted

    async def close(self) -> None:
        if self._indexes is not None:
            await self._indexes.close()
        if self._opened:
            await asyncio.to_thread(self._pool.close)


def _check_model(conn: psycopg.Connection, tenant: str, model: str, dimensions: int) -> None:
    """A model the tenant has no live embedded memory of, or a vector of other
    dimensions than the model's, is refused: an empty answer would hide the
    mistake. Two index probes that stop at the first row."""
    probe = (
        f"select embedding_dimensions from {TABLE} where tenant = %s and embedding_model = %s "
        f"and embedding is not null and not _deleted"
    )
    if conn.execute(probe + " and embedding_dimensions = %s limit 1", (tenant, model, dimensions)).fetchone():
        return
    other = conn.execute(probe + " limit 1", (tenant, model)).fetchone()
    if other is None:
        raise ValidationError(f"no memory of this tenant is embedded with model {model!r}", field="model")
    raise ValidationError(
        f"model {model!r} makes {other[0]}-dimensional vectors; the query vector has {dimensions}", field="vector"
    )


def _memory(row: dict[str, Any]) -> dict[str, Any]:
    """A result row in the replica's canonical forms (times as ISO-8601 UTC text)."""
    return {
        name: schema.format_timestamp(value) if isinstance(value, dt.datetime) else value for name, value in row.items()
    }
