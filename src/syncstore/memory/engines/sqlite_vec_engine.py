"""The sqlite-vec engine: vectors in a ``vec0`` virtual table, on disk, not in memory.

Where it lives: a sidecar SQLite file beside the replica (``<replica>-memvec``),
not in the replica itself. The vec0 tables are a cache derived from
``agent_memory``: keeping them out of the replica keeps the replica a plain
SQLite file that any tool can read without the extension, lets a schema
rollback leave nothing behind, and lets anyone delete the sidecar to have it
rebuilt. The sidecar records which replica it was built from (its site id)
and how far it has read the memory feed; a sidecar from another file, or one
ahead of the replica (a restored backup), is rebuilt.

Keeping in step: vec0 takes no triggers, so :meth:`SqliteVecIndex.refresh`
applies the memory feed (:mod:`syncstore.memory.feed`) in one sidecar
transaction that also stores the new cursor; the sidecar's write lock makes
two processes take turns, so neither can write older rows over newer ones.

Search: filters the vec0 table can evaluate during its scan (agent, type,
importance, active, expiry) are metadata columns (agent and type as integer
codes); a tag filter becomes an
``id IN (...)`` of the memories with those tags, also evaluated during the
scan. vec0 orders by distance alone, so the engine asks for more neighbours
than ``k``, ranks them with the full formula, and stops once no row outside
them can reach the top ``k`` (:meth:`Ranking.ceiling` of the farthest one);
else it asks once more for eight times as many, and if that does not settle
it either (or would pass vec0's limit of 4096), it scores every matching row
with ``vec_distance_cosine``. Every path is exact and none can return fewer
than ``k`` when ``k`` rows match.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import apsw
import numpy as np

from syncstore import schema
from syncstore.errors import CapabilityError, ReplicaError
from syncstore.memory import feed
from syncstore.shared.memory.filters import Filters
from syncstore.shared.memory.ranking import Ranking, top_k
from syncstore.replica.connection import connect

if TYPE_CHECKING:
    from syncstore.store import Store

_TYPE_CODE = {name: code for code, name in enumerate(schema.MEMORY_TYPES)}

LAYOUT = 1  # the sidecar's table layout (its user_version); another is rebuilt
KNN_LIMIT = 4096  # vec0's largest k
_FIRST_ASK = 64  # neighbours asked for first (at least 4 * k)
_GROWTH = 8
_WIDENINGS = 1  # wider asks before scoring every matching row


def sidecar_path(store: Store) -> str:
    return ":memory:" if store.path in ("", ":memory:") else f"{store.path}-memvec"


class VecSidecar:
    """The sidecar file and its registry of vec0 tables, one per (model, dimensions)."""

    def __init__(self, store: Store):
        if not store.capabilities.vector:
            raise CapabilityError(f"sqlite-vec is not available: {store.capabilities.vector_problem}")
        if store.readonly:
            raise CapabilityError("the sqlite-vec engine keeps a sidecar file and cannot run on a read-only replica")
        self.store = store
        self.path = sidecar_path(store)
        self.conn, caps = connect(self.path)
        if not caps.vector:
            self.conn.close()
            raise CapabilityError(f"sqlite-vec did not load for the sidecar: {caps.vector_problem}")
        self._lock = threading.RLock()
        with self.write() as conn:
            if conn.execute("pragma user_version").fetchone()[0] != LAYOUT:
                # Made by another version of this engine: it is a cache, start afresh.
                for (name,) in conn.execute("select name from sqlite_schema where type = 'table' and sql like '%virtual%'").fetchall():
                    conn.execute(f'drop table if exists "{name}"')
                conn.execute("drop table if exists vec_indexes")
                conn.execute("drop table if exists agent_codes")
                conn.execute(f"pragma user_version = {LAYOUT}")
            conn.execute(
                "create table if not exists vec_indexes ("
                "name text primary key not null, model text not null, dimensions integer not null, "
                "cursor integer not null, origin blob not null, unique (model, dimensions))"
            )
            # vec0 compares integers faster than text (and long text, such as a
            # UUID agent id, is kept outside its chunks): agents get numbers.
            conn.execute("create table if not exists agent_codes (code integer primary key, agent_id text unique not null)")

    def agent_code(self, conn: apsw.Connection, agent_id: str, *, create: bool) -> int | None:
        found = conn.execute("select code from agent_codes where agent_id = ?", (agent_id,)).fetchone()
        if found is not None or not create:
            return None if found is None else found[0]
        return conn.execute("insert into agent_codes (agent_id) values (?) returning code", (agent_id,)).fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[apsw.Connection]:
        """One sidecar write transaction; other processes wait their turn."""
        with self._lock:
            try:
                self.conn.execute("begin immediate")
            except apsw.BusyError:
                raise ReplicaError(f"{self.path}: the vector sidecar is locked by another process; try again") from None
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("rollback")
                raise
            self.conn.execute("commit")

    def table_for(self, model: str, dimensions: int) -> str:
        """The vec0 table of this vector space, created (empty, unbuilt) when new."""
        with self.write() as conn:
            found = conn.execute(
                "select name from vec_indexes where model = ? and dimensions = ?", (model, dimensions)
            ).fetchone()
            if found:
                return found[0]
            (number,) = conn.execute("select count(*) + 1 from vec_indexes").fetchone()
            name = f"vec_{number}"
            while conn.execute("select 1 from sqlite_schema where name = ?", (name,)).fetchone():
                number += 1
                name = f"vec_{number}"
            conn.execute(
                f"create virtual table {name} using vec0("
                f"id text primary key, embedding float[{int(dimensions)}] distance_metric=cosine, "
                "agent integer, memory_type integer, importance integer, is_active integer, expires float)"
            )
            conn.execute(
                "insert into vec_indexes (name, model, dimensions, cursor, origin) values (?, ?, ?, -1, ?)",
                (name, model, dimensions, self.store.site_id),
            )
            return name


class SqliteVecIndex:
    name = "sqlite-vec"

    def __init__(self, store: Store, sidecar: VecSidecar, *, model: str, dimensions: int):
        self.store = store
        self.sidecar = sidecar
        self.model = model
        self.dimensions = dimensions
        self.table = sidecar.table_for(model, dimensions)
        self._insert = (
            f"insert into {self.table} (id, embedding, agent, memory_type, importance, is_active, expires) "
            "values (?, ?, ?, ?, ?, ?, ?)"
        )
        self._applied: int | None = None  # the feed position this process last brought the table to
        self.refresh()

    @property
    def size(self) -> int:
        return self.sidecar.conn.execute(f"select count(*) from {self.table}").fetchone()[0]

    def refresh(self) -> int:
        """Apply the feed since the stored cursor (a full build the first time)."""
        main = self.store.connection
        if main.in_transaction:
            # Uncommitted feed entries may roll back and their numbers be used
            # again: the sidecar only ever takes committed rows.
            return 0
        if self._applied is not None and feed.position(main) == self._applied:
            return 0  # nothing written since: no need for the sidecar's write lock
        with self.sidecar.write() as conn:
            cursor, origin = conn.execute(
                "select cursor, origin from vec_indexes where name = ?", (self.table,)
            ).fetchone()
            now = feed.position(main)
            if cursor < 0 or origin != self.store.site_id or cursor > now:
                conn.execute(f"delete from {self.table}")
                for row in feed.all_rows(main, self.model, self.dimensions):
                    self._put(conn, row)
                applied, cursor = -1, now
            else:
                ids, cursor = feed.changed_since(main, cursor)
                rows = feed.rows_for(main, ids, self.model, self.dimensions)
                for memory_id in ids:
                    conn.execute(f"delete from {self.table} where id = ?", (memory_id,))
                    if memory_id in rows:
                        self._put(conn, rows[memory_id])
                applied = len(ids)
            conn.execute(
                "update vec_indexes set cursor = ?, origin = ? where name = ?", (cursor, self.store.site_id, self.table)
            )
        self._applied = cursor
        return applied

    def _put(self, conn: apsw.Connection, row: feed.IndexRow) -> None:
        agent = self.sidecar.agent_code(conn, row.agent_id, create=True)
        kind = _TYPE_CODE.get(row.memory_type, -1)
        conn.execute(self._insert, (row.id, row.vector, agent, kind, row.importance, int(row.is_active), row.expires))

    def touch(self, memory_ids: list[str], when: float) -> None:
        """Nothing to do: recency is read from the replica at ranking time."""

    # --- search -------------------------------------------------------------

    def _constraints(self, filters: Filters) -> tuple[list[str], list[object]] | None:
        clauses: list[str] = []
        params: list[object] = []
        if filters.tags:
            # vec0 cannot look inside a JSON list; the replica can, and vec0
            # applies "id IN (...)" during its scan.
            where, values = filters.sql("m")
            ids = [
                row[0]
                for row in self.store.connection.execute(
                    # (no dimensions test: it would read past each vector; vec0 holds one size)
                    "select m.id from agent_memory m where m.embedding_model = ? and " + " and ".join(where),
                    (self.model, *values),
                )
            ]
            if not ids:
                return None
            clauses.append("id in (select value from json_each(?))")
            params.append(schema.encode_json(ids))
        if filters.agent_id is not None:
            code = self.sidecar.agent_code(self.sidecar.conn, filters.agent_id, create=False)
            if code is None:
                return None  # an agent with no memories here
            clauses.append("agent = ?")
            params.append(code)
        if filters.memory_types is not None:
            clauses.append(f"memory_type in ({', '.join('?' * len(filters.memory_types))})")
            params.extend(_TYPE_CODE[name] for name in filters.memory_types)
        if filters.min_importance is not None:
            clauses.append("importance >= ?")
            params.append(filters.min_importance)
        if not filters.include_inactive:
            clauses.append("is_active = 1")
        if not filters.include_expired:
            clauses.append("expires > ?")
            params.append(filters.now)
        return clauses, params

    def search(self, query: np.ndarray, filters: Filters, ranking: Ranking, k: int) -> list[tuple[str, float, float]]:
        """``[(memory_id, score, similarity)]``, best first: the exact top ``k``."""
        if k <= 0:
            return []
        vector = np.ascontiguousarray(query, dtype=np.float32).tobytes()
        if self._applied is None:
            # Opened inside a write transaction: the table may not be built
            # yet, so score every matching row in the replica instead.
            return self._scan(vector, filters, ranking, k)
        built = self._constraints(filters)
        if built is None:
            return []
        clauses, params = built
        sql = f"select id, distance from {self.table} where embedding match ? and k = ?"
        sql += "".join(f" and {clause}" for clause in clauses)
        ask = min(max(_FIRST_ASK, 4 * k), KNN_LIMIT)
        widenings = _WIDENINGS
        while True:
            hits = list(self.sidecar.conn.execute(sql, (vector, ask, *params)))
            ids = [memory_id for memory_id, _ in hits]
            # A zero vector has no direction: vec0 gives it no distance; it scores 0.
            similarity = np.array([0.0 if d is None else 1.0 - d for _, d in hits], dtype=np.float64)
            scores = self._scores(ids, similarity, ranking, filters.now)
            best = top_k(scores, ids, k)
            if len(hits) < ask:  # every matching row is among the hits
                break
            measured = [1.0 - d for _, d in hits if d is not None]
            if len(best) == k and measured and scores[best[-1]] > ranking.ceiling(min(measured)):
                break  # no row farther away can reach the top k
            if ask == KNN_LIMIT or not widenings:
                # Each vec0 query scans every vector anyway: past one wider ask,
                # scoring every matching row once is cheaper than asking again.
                return self._scan(vector, filters, ranking, k)
            widenings -= 1
            ask = min(ask * _GROWTH, KNN_LIMIT)
        return [(ids[i], float(scores[i]), float(similarity[i])) for i in best]

    def _scores(self, ids: list[str], similarity: np.ndarray, ranking: Ranking, now: float) -> np.ndarray:
        if not ranking.importance and not ranking.recency:
            return ranking.similarity * similarity
        meta = feed.touched_of(self.store.connection, ids)
        importance = np.array([meta.get(i, (0, 0.0))[0] for i in ids], dtype=np.float64)
        touched = np.array([meta.get(i, (0, 0.0))[1] for i in ids], dtype=np.float64)
        return ranking.scores(similarity, importance, touched, now)

    def _scan(self, vector: bytes, filters: Filters, ranking: Ranking, k: int) -> list[tuple[str, float, float]]:
        """Score every matching row in the replica (when vec0's k limit is not enough)."""
        where, values = filters.sql("m")
        sql = (
            f"select m.id, vec_distance_cosine(m.embedding, ?), m.importance, {feed.TOUCHED_SQL} "
            "from agent_memory m left join _ss_memory_access a on a.memory_id = m.id "
            "where m.embedding_model = ? and m.embedding_dimensions = ? and m.embedding is not null"
        )
        sql += "".join(f" and {clause}" for clause in where)
        rows = list(self.store.connection.execute(sql, (vector, self.model, self.dimensions, *values)))
        ids = [row[0] for row in rows]
        similarity = np.array([0.0 if row[1] is None or math.isnan(row[1]) else 1.0 - row[1] for row in rows])
        importance = np.array([row[2] or 0 for row in rows], dtype=np.float64)
        touched = np.array([row[3] for row in rows], dtype=np.float64)
        scores = ranking.scores(similarity, importance, touched, filters.now)
        return [(ids[i], float(scores[i]), float(similarity[i])) for i in top_k(scores, ids, k)]
