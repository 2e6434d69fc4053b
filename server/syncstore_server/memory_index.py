"""HNSW indexes for server memory search, built where pgvector is, when first needed.

Memories of many embedding models share ``syncstore.agent_memory``, whose
``embedding`` column is an untyped ``vector`` (any dimensions), so one HNSW
index cannot serve them all: each (model, dimensions) gets a partial index of
its own (:func:`syncstore.shared.memory.server_search.create_hnsw_index`). The server
builds one the first time that model is searched, in the background with
``CREATE INDEX CONCURRENTLY`` (writes go on meanwhile), and searches exactly
until it is valid. Guards, since models are named by clients:

- a model with fewer than ``min_rows`` live rows gets no index (an exact scan
  of a few thousand rows is as fast), asked again after ``recheck_s``;
- at most ``max_indexes`` such indexes in the database; past that, exact;
- one build at a time per process, and per index across processes (a
  session advisory lock): a second instance never drops a build in progress;
- a build that failed or was cut short leaves an invalid index, which the
  next build (under the lock) drops and makes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
from psycopg import sql

from syncstore.shared.memory import server_search

from syncstore_server.tables import SCHEMA

log = logging.getLogger("syncstore.server.memory_index")

INDEX_LOCK_CLASS = 0x5349  # advisory lock key space ("SI"); the key is hashtext(index name)
DEFAULT_MIN_ROWS = 1_000
DEFAULT_MAX_INDEXES = 16
DEFAULT_RECHECK_S = 600.0
VALID_TTL_S = 60.0  # how long a seen-valid index is trusted before looking again


class HnswIndexes:
    """Which (model, dimensions) have a valid HNSW index; builds the missing ones."""

    def __init__(
        self,
        database_url: str,
        *,
        table: str,
        min_rows: int = DEFAULT_MIN_ROWS,
        max_indexes: int = DEFAULT_MAX_INDEXES,
        recheck_s: float = DEFAULT_RECHECK_S,
    ):
        self._url = database_url
        self.table = table
        self.min_rows = min_rows
        self.max_indexes = max_indexes
        self.recheck_s = recheck_s
        self._valid: dict[tuple[str, int], float] = {}  # -> when last seen valid
        self._not_before: dict[tuple[str, int], float] = {}  # -> no build attempt before then
        self._task: asyncio.Task[None] | None = None
        self._building: psycopg.Connection | None = None
        self._closed = False

    def ready(self, conn: psycopg.Connection, model: str, dimensions: int) -> bool:
        """Whether a valid index serves this model (on the caller's connection)."""
        key = (model, dimensions)
        seen = self._valid.get(key)
        if seen is not None and time.monotonic() - seen < VALID_TTL_S:
            return True
        name = server_search.hnsw_index_name(conn, model=model, dimensions=dimensions, table=self.table)
        if _state(conn, name) == "valid":
            self._valid[key] = time.monotonic()
            return True
        self._valid.pop(key, None)
        return False

    def request(self, model: str, dimensions: int) -> None:
        """Ask for an index for this model; returns at once (call on the event loop)."""
        key = (model, dimensions)
        if self._closed or (self._task is not None and not self._task.done()):
            return  # one build at a time; the next search asks again
        if time.monotonic() < self._not_before.get(key, 0.0):
            return
        self._not_before[key] = time.monotonic() + self.recheck_s
        self._task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._build, model, dimensions))

    def _build(self, model: str, dimensions: int) -> None:
        try:
            with psycopg.connect(self._url, autocommit=True, application_name="syncstore-server-index") as conn:
                self._building = conn
                try:
                    self._build_on(conn, model, dimensions)
                finally:
                    self._building = None
        except psycopg.Error as exc:
            if not self._closed:
                detail = exc.diag.message_primary or type(exc).__name__
                log.warning("HNSW index for model %r (%d dimensions) not built: %s", model, dimensions, detail)

    def _build_on(self, conn: psycopg.Connection, model: str, dimensions: int) -> None:
        name = server_search.hnsw_index_name(conn, model=model, dimensions=dimensions, table=self.table)
        qualified = f"{SCHEMA}.{name}"
        locked = conn.execute("select pg_try_advisory_lock(%s, hashtext(%s))", (INDEX_LOCK_CLASS, name)).fetchone()
        if not (locked and locked[0]):
            return  # another instance is building it
        state = _state(conn, name)
        if state == "valid":
            return
        if state == "invalid":  # left by a build that failed or was cut short
            conn.execute(sql.SQL("drop index concurrently if exists {}").format(sql.Identifier(SCHEMA, name)))
        rows = _model_rows(conn, self.table, model, dimensions, limit=self.min_rows)
        if rows < self.min_rows:
            log.info("model %r has %d rows: searched exactly, no HNSW index yet", model, rows)
            return
        if _server_indexes(conn, self.table) >= self.max_indexes:
            log.warning(
                "HNSW index for model %r not built: %d model indexes exist already (the limit); searched exactly",
                model, self.max_indexes,
            )  # fmt: skip
            return
        started = time.monotonic()
        log.info("building HNSW index %s for model %r (%d dimensions)", qualified, model, dimensions)
        server_search.create_hnsw_index(conn, model=model, dimensions=dimensions, table=self.table, concurrently=True)
        log.info("HNSW index %s built in %.1f s", qualified, time.monotonic() - started)

    async def close(self) -> None:
        """Stop: a build in progress is cancelled (the next start redoes it)."""
        self._closed = True
        building = self._building
        if building is not None:
            await asyncio.to_thread(building.cancel_safe)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self) -> None:
        """Wait for the build in progress, if any (for tools and tests)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def _state(conn: psycopg.Connection, name: str) -> str | None:
    found = conn.execute(
        "select i.indisvalid and i.indisready from pg_index i where i.indexrelid = to_regclass(%s)",
        (f"{SCHEMA}.{name}",),
    ).fetchone()
    if found is None:
        return None
    return "valid" if found[0] else "invalid"


def _model_rows(conn: psycopg.Connection, table: str, model: str, dimensions: int, *, limit: int) -> int:
    """How many live rows the model has, counting no further than ``limit``."""
    found = conn.execute(
        sql.SQL(
            "select count(*) from (select 1 from {t} where embedding_model = %s and embedding_dimensions = %s "
            "and embedding is not null and not _deleted limit %s) s"
        ).format(t=sql.Identifier(*table.split("."))),
        (model, dimensions, limit),
    ).fetchone()
    return int(found[0]) if found else 0


def _server_indexes(conn: psycopg.Connection, table: str) -> int:
    """HNSW indexes on the table (each serves one model)."""
    found: Any = conn.execute(
        "select count(*) from pg_index i join pg_class c on c.oid = i.indexrelid join pg_am a on a.oid = c.relam "
        "where i.indrelid = to_regclass(%s) and a.amname = 'hnsw'",
        (table,),
    ).fetchone()
    return int(found[0])
