"""The PostgreSQL change store: merge pushes, keep the change log, read it back.

One push from one site of one tenant is merged in one PostgreSQL transaction,
set-based so that a batch costs a handful of statements, not one per row:

1. ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING acked_seq`` on the site's
   ack row: reads how far this site is merged and locks it, so two
   connections of one site cannot merge the same changes twice. Changes at or
   below it are skipped (at most once per (site, seq)).
2. Each transaction is checked against the schema; one that fails is refused
   whole and recorded, and the ack moves past it. One stamped too far ahead
   of the server's clock is deferred instead: it and every later one are left
   out, unrecorded, and the ack stops before it, so the client pushes it
   again once the server's time has caught up (``MergeResult.deferred``).
3. One ``SELECT ... FOR UPDATE`` per table locks the rows the push touches
   (ordered by id, tables in a fixed order, so pushes never deadlock on them).
4. The merge is decided in Python with the pure rule (``merge_plan``).
5. Changed rows go to a temporary staging table by ``COPY``, then into the
   table with one ``INSERT ... ON CONFLICT DO NOTHING`` (new rows, whole) and
   one ``UPDATE ... FROM`` (existing rows: only the columns the push writes,
   which are also the only ones step 3 reads). A new row that another push
   inserted meanwhile makes the insert come up short: the whole push is retried.
6. Under the tenant's log lock (below), sequence numbers are drawn and the log
   entries and conflict records are written by ``COPY``; the ack row is raised
   and a NOTIFY wakes the streams of every server instance, all committed at once.

The log lock: a sequence hands out numbers at draw time, not at commit time,
so two pushes drawing 7 and 8 may commit 8 first, and a reader would pass over
7 for good. A transaction-level advisory lock per tenant, taken just before
drawing and held until commit, makes a tenant's entries commit in sequence
order: a reader that sees entry N sees every earlier one. (Readers only ever
read one tenant's log.) It is held only for the last few statements of a push.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, NamedTuple, Sequence

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from syncstore import schema
from syncstore.core import hlc as hlc_mod
from syncstore.core.fingerprint import change_fingerprint
from syncstore.core import protocol as p
from syncstore.core import server_session, shapes
from syncstore.errors import SyncError, ValidationError

from syncstore_server import clocks, merge_plan
from syncstore_server.merge_plan import Row, RowKey
from syncstore_server.tables import SCHEMA, VECTOR_COLUMNS_QUERY, Catalog
from syncstore_server.validate import DEFAULT_MAX_TX_CHANGES, Checked, Deferred, Refused, check_tx

log = logging.getLogger("syncstore.server.store")

CHANNEL = "syncstore_changes"  # NOTIFY channel; the payload is the tenant
LOG_LOCK_CLASS = 0x5353  # advisory lock key space ("SS"); the key is hashtext(tenant)
MAX_ATTEMPTS = 8  # retries of a push after a deadlock or a concurrent insert
# Marks a transaction as the server's own write: the direct-write triggers of
# migration 0004 (syncstore_server.direct_writes) leave its rows alone. Any
# server code that writes the synced tables runs this first in its transaction.
SERVER_WRITER = "SELECT set_config('syncstore.writer', 'server', true)"
# Every pooled connection: transactions are explicit; text travels as UTF-8
# whatever the database's encoding (a value it cannot hold is refused by the
# server, never mangled by the client library); operators can spot the server
# in pg_stat_activity.
CONNECTION_OPTIONS: dict[str, Any] = {
    "autocommit": True,
    "client_encoding": "UTF8",
    "application_name": "syncstore-server",
}

_encode = msgspec.msgpack.encode
_decode_tx = msgspec.msgpack.Decoder(p.ServerTx).decode
_decode_value = msgspec.msgpack.decode


class Deferral(NamedTuple):
    """A pushed transaction left for later, and everything pushed after it."""

    tx: int
    first_seq: int  # its first change not merged before: the ack stops before it
    code: str
    message: str
    retry_after_ms: int


class MergeResult(NamedTuple):
    upto_seq: int  # every change of the site with seq <= this is merged (or refused)
    rejected: list[p.Rejection]
    row_changes: int  # rows written
    conflicts: int
    positions: list[int]  # log positions written
    deferred: Deferral | None = None  # a transaction (and what follows) to push again later


class _ConcurrentInsert(Exception):
    """A row this push took for new was inserted by another push meanwhile."""


class SiteReused(Exception):
    """The push's change at the site's acked sequence is not the one merged
    there: it comes from another copy of the replica file (same site id,
    another history). Nothing was merged; the client takes a new site id."""


def _fingerprint(change: p.LocalChange) -> bytes:
    return change_fingerprint(change.hlc, change.table, change.id)


_RETRY = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, _ConcurrentInsert)


def never_storable(exc: psycopg.Error) -> bool:
    """Whether PostgreSQL said it will never take a value of the statement:
    a data exception (SQLSTATE class 22: a character the database's encoding
    lacks, a number out of range) or a program limit (class 54: a value too
    large for an index or a vector, JSON nested past the stack depth limit).
    The transaction carrying it is refused for good instead of failing the
    push, which the client would retry for ever."""
    return (exc.sqlstate or "").startswith(("22", "54"))


async def load_catalog(conn: psycopg.AsyncConnection) -> Catalog:
    cur = await conn.execute(VECTOR_COLUMNS_QUERY)
    return Catalog.build(frozenset((table, column) for table, column in await cur.fetchall()))


async def prepare_connection(conn: psycopg.AsyncConnection) -> None:
    """Per-connection set-up (the pool's ``configure``): the staging tables."""
    catalog = Catalog.build()
    await conn.execute("; ".join(t.create_stage for t in catalog.tables.values()))


class ChangeStore:
    """Merges pushes into PostgreSQL and reads the change log; safe to share
    between connections (all state is in the database)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        catalog: Catalog,
        *,
        max_drift_ms: int = hlc_mod.DEFAULT_MAX_DRIFT_MS,
        max_tx_changes: int = DEFAULT_MAX_TX_CHANGES,
        now_ms: Callable[[], int] = hlc_mod.wall_ms,
    ):
        self.pool = pool
        self.catalog = catalog
        self.max_drift_ms = max_drift_ms
        self.max_tx_changes = max_tx_changes
        self._now_ms = now_ms
        # Snapshot chunks read ahead, by what the next read_snapshot will ask.
        self._read_ahead: dict[tuple[Any, ...], asyncio.Task[Any]] = {}

    # --- acks -----------------------------------------------------------------

    async def acked_seq(self, tenant: str, site: bytes) -> int:
        return (await self.site_ack(tenant, site))[0]

    async def site_ack(self, tenant: str, site: bytes) -> tuple[int, bytes]:
        """How far this site is merged, and the fingerprint of its change there
        (b"": none, or merged before fingerprints were kept)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT acked_seq, acked_fingerprint FROM {SCHEMA}.site_acks WHERE tenant = %s AND site = %s",
                (tenant, site),
            )
            found = await cur.fetchone()
        return (found[0], bytes(found[1] or b"")) if found else (0, b"")

    # --- merging --------------------------------------------------------------

    async def merge(
        self,
        tenant: str,
        site: bytes,
        txs: Sequence[p.LocalTx],
        *,
        also: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None = None,
        renumber: bool = False,
        client_schema: int | None = None,
    ) -> MergeResult:
        """Merge one push: each transaction atomically, each change at most once.

        ``also`` runs inside the same database transaction (e.g. marking a
        conflict resolved together with the value that resolves it).
        ``renumber`` gives the changes the site's next sequence numbers (for
        the server's own writes, which have no local log).
        ``client_schema``: the pushing client's schema version, when older than
        this server's (its inserts lack the newer columns, which take defaults).
        """
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with self.pool.connection() as conn:
                    return await self._merge(conn, tenant, site, txs, also, renumber, client_schema)
            except _RETRY as exc:
                log.info("push from tenant %r retried (%s)", tenant, type(exc).__name__)
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
            except psycopg.Error as exc:
                if not never_storable(exc):
                    raise
                if also is not None or renumber:
                    # The server's own write (a resolution): say so to whoever asked.
                    raise ValidationError(f"PostgreSQL refused the value: {_pg_message(exc)}") from None
                log.warning("push of tenant %r isolating a refused value: %s", tenant, _pg_message(exc))
                # A value PostgreSQL refused that the schema check let pass:
                # find the transaction at fault, refuse it, merge the rest.
                return await self._isolate(tenant, site, txs, exc, client_schema)
        raise SyncError(f"a push from tenant {tenant!r} kept conflicting with other pushes; it was not merged")

    async def _isolate(
        self, tenant: str, site: bytes, txs: Sequence[p.LocalTx], exc: psycopg.Error, client_schema: int | None = None
    ) -> MergeResult:
        if len(txs) == 1:
            return await self._refuse(tenant, site, txs[0], Refused("bad_value", _pg_message(exc)))
        results = []
        for tx in txs:
            results.append(await self.merge(tenant, site, [tx], client_schema=client_schema))
            if results[-1].deferred is not None:
                break  # what follows a deferred transaction waits with it
        return MergeResult(
            max(r.upto_seq for r in results),
            [rej for r in results for rej in r.rejected],
            sum(r.row_changes for r in results),
            sum(r.conflicts for r in results),
            [pos for r in results for pos in r.positions],
            results[-1].deferred,
        )

    async def _refuse(self, tenant: str, site: bytes, tx: p.LocalTx, refusal: Refused) -> MergeResult:
        async with self.pool.connection() as conn, conn.transaction():
            acked, known = await self._lock_site(conn, tenant, site)
            _same_history([tx], acked, known)
            fresh = [c for c in tx.changes if c.seq > acked]
            rejected = []
            if fresh:
                rejected = await self._record_refusals(conn, tenant, site, [(p.LocalTx(tx.tx, fresh), refusal)])
                await self._raise_ack(conn, tenant, site, fresh[-1].seq, _fingerprint(fresh[-1]))
            return MergeResult(max(acked, tx.changes[-1].seq), rejected, 0, 0, [])

    async def _merge(
        self,
        conn: psycopg.AsyncConnection,
        tenant: str,
        site: bytes,
        txs: Sequence[p.LocalTx],
        also: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None,
        renumber: bool = False,
        client_schema: int | None = None,
    ) -> MergeResult:
        now_ms = self._now_ms()
        async with conn.transaction():
            await conn.execute(SERVER_WRITER)  # not a direct write (migration 0004)
            acked, known = await self._lock_site(conn, tenant, site)
            if renumber:
                txs = _renumber(txs, after=acked)
            else:
                _same_history(txs, acked, known)
            last = max((c.seq for tx in txs for c in tx.changes), default=acked)
            work: list[tuple[p.LocalTx, list[Checked]]] = []
            refused: list[tuple[p.LocalTx, Refused]] = []
            deferred: Deferral | None = None
            for index, tx in enumerate(txs):
                fresh = tx.changes if tx.changes[0].seq > acked else [c for c in tx.changes if c.seq > acked]
                if not fresh:
                    continue  # merged before: a retry after a lost ack
                if len(fresh) != len(tx.changes):
                    tx = p.LocalTx(tx.tx, fresh)
                try:
                    checked = check_tx(
                        tx, now_ms=now_ms, max_drift_ms=self.max_drift_ms, max_tx_changes=self.max_tx_changes,
                        client_schema=client_schema,
                    )
                except Deferred as later:
                    # Merge what precedes it; ack up to there, never past it.
                    deferred = Deferral(tx.tx, fresh[0].seq, later.code, later.message, later.retry_after_ms)
                    last = max((c.seq for before in txs[:index] for c in before.changes), default=acked)
                    break
                except Refused as refusal:
                    refused.append((tx, refusal))
                    continue
                work.append((tx, checked))
            rows = await self._lock_rows(conn, tenant, work)
            entries: list[tuple[merge_plan.PlannedTx, list[shapes.RowKeys]]] = []
            for tx, checked in work:
                unborn = merge_plan.unborn(checked, rows)
                if unborn is not None:
                    refused.append((tx, Refused("bad_value", unborn)))
                    continue
                before = {}
                for change in checked:
                    key = (change.table, change.id)
                    if key not in before:
                        row = rows.get(key)
                        before[key] = None if row is None else merge_plan.indexed_values(change.table, row.cells)
                entry = merge_plan.plan_tx(checked, rows, site=site, origin_tx=tx.tx)
                if entry.changes or entry.conflicts:
                    entries.append((entry, merge_plan.routing_keys(entry, rows, before)))
            written = await self._write_rows(conn, tenant, rows)
            positions: list[int] = []
            conflicts = 0
            if entries:
                positions, conflicts = await self._append_log(conn, tenant, site, entries)
            rejected = await self._record_refusals(conn, tenant, site, refused) if refused else []
            if also is not None:
                await also(conn)
            if last > acked:
                await self._raise_ack(conn, tenant, site, last, _fingerprint(_change_at(txs, last)))
        if deferred is not None:
            log.info("deferred transaction %s of tenant %r: %s", deferred.tx, tenant, deferred.message)
        return MergeResult(max(acked, last), rejected, written, conflicts, positions, deferred)

    async def _lock_site(self, conn: psycopg.AsyncConnection, tenant: str, site: bytes) -> tuple[int, bytes]:
        """Lock the site's ack row (made on its first push); its acked sequence and fingerprint."""
        cur = await conn.execute(
            f"INSERT INTO {SCHEMA}.site_acks AS a (tenant, site) VALUES (%s, %s) "
            f"ON CONFLICT (tenant, site) DO UPDATE SET last_seen = now() RETURNING a.acked_seq, a.acked_fingerprint",
            (tenant, site),
        )
        found = await cur.fetchone()
        assert found is not None
        return found[0], bytes(found[1] or b"")

    async def _raise_ack(
        self, conn: psycopg.AsyncConnection, tenant: str, site: bytes, upto: int, fingerprint: bytes
    ) -> None:
        await conn.execute(
            f"UPDATE {SCHEMA}.site_acks SET acked_fingerprint = CASE WHEN %s > acked_seq THEN %s "
            f"ELSE acked_fingerprint END, acked_seq = greatest(acked_seq, %s) WHERE tenant = %s AND site = %s",
            (upto, fingerprint, upto, tenant, site),
        )

    async def _lock_rows(
        self, conn: psycopg.AsyncConnection, tenant: str, work: list[tuple[p.LocalTx, list[Checked]]]
    ) -> dict[RowKey, Row]:
        ids: dict[str, set[str]] = {}
        whole: dict[str, set[str]] = {}  # rows written whole (inserts)
        columns: dict[str, set[str]] = {}  # what the other changes write
        for _, checked in work:
            for change in checked:
                ids.setdefault(change.table, set()).add(change.id)
                if len(change.values) == len(self.catalog.tables[change.table].cell_names):
                    whole.setdefault(change.table, set()).add(change.id)
                else:
                    columns.setdefault(change.table, set()).update(change.values)
        rows: dict[RowKey, Row] = {}
        for name in sorted(ids):  # a fixed table order: pushes never wait on each other in a cycle
            table = self.catalog.tables[name]
            # Routing needs every row's indexed values; a push that may move one
            # (it writes an indexed column) reads rows whole, since a row that
            # moves into a shape is sent whole to its subscribers.
            indexes = table.table.indexes
            written_columns = columns.get(name, set())
            if written_columns & set(indexes):
                view = table.full
            else:
                view = table.view((*written_columns, *indexes))
            cur = await conn.execute(view.select_for_update, (tenant, sorted(ids[name])))
            found = [view.row_from_db(record) for record in await cur.fetchall()]
            for row_id, row in found:
                rows[(name, row_id)] = row
            # A whole-row write to a row that exists competes with every cell:
            # read those rows whole (they are locked already).
            again = [row_id for row_id, _ in found if row_id in whole.get(name, ())]
            if again and view is not table.full:
                cur = await conn.execute(table.full.select_rows, (tenant, again))
                for record in await cur.fetchall():
                    row_id, row = table.full.row_from_db(record)
                    rows[(name, row_id)] = row
        return rows

    async def _write_rows(self, conn: psycopg.AsyncConnection, tenant: str, rows: dict[RowKey, Row]) -> int:
        by_table: dict[str, list[tuple[str, Row]]] = {}
        for (name, row_id), row in rows.items():
            if row.dirty:
                by_table.setdefault(name, []).append((row_id, row))
        written = 0
        for name in sorted(by_table):
            table = self.catalog.tables[name]
            fresh = [(row_id, row) for row_id, row in by_table[name] if not row.exists]
            old: dict[Any, list[tuple[str, Row]]] = {}
            for row_id, row in by_table[name]:
                if row.exists:
                    old.setdefault(row.view, []).append((row_id, row))
            async with conn.cursor() as cur:
                if fresh:
                    async with cur.copy(table.full.copy_stage) as copy:
                        for row_id, row in fresh:
                            await copy.write_row(table.full.row_to_db(tenant, row_id, row, 0))
                    await cur.execute(table.insert_new)
                    if cur.rowcount != len(fresh):
                        raise _ConcurrentInsert(name)
                for group, (view, members) in enumerate(old.items(), start=1):
                    async with cur.copy(view.copy_stage) as copy:
                        for row_id, row in members:
                            await copy.write_row(view.row_to_db(tenant, row_id, row, group))
                    await cur.execute(view.update_old, (group,))
            written += len(by_table[name])
        return written

    async def _append_log(
        self,
        conn: psycopg.AsyncConnection,
        tenant: str,
        site: bytes,
        keyed: list[tuple[merge_plan.PlannedTx, list[shapes.RowKeys]]],
    ) -> tuple[list[int], int]:
        entries = [entry for entry, _ in keyed]
        # The tenant's log lock, held to commit: entries commit in seq order.
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOG_LOCK_CLASS, tenant))
        cur = await conn.execute(
            f"SELECT nextval('{SCHEMA}.change_log_seq') FROM generate_series(1, %s)", (len(entries),)
        )
        seqs = sorted(row[0] for row in await cur.fetchall())
        created_at = schema.now_iso()
        conflicts = 0
        async with conn.cursor() as cur:
            async with cur.copy(
                f"COPY {SCHEMA}.change_log (seq, tenant, origin_site, origin_tx, tables, payload, created_at, routing) "
                f"FROM STDIN"
            ) as copy:
                for seq, (entry, keys) in zip(seqs, keyed):
                    records = [merge_plan.conflict_record(c, created_at=created_at) for c in entry.conflicts]
                    payload = _encode(p.ServerTx(seq=seq, changes=entry.changes, conflicts=records))
                    await copy.write_row(
                        (seq, tenant, site, entry.origin_tx, entry.tables, payload, created_at, shapes.encode_keys(keys))
                    )
            if any(entry.conflicts for entry in entries):
                async with cur.copy(
                    f"COPY {SCHEMA}.conflicts (id, tenant, seq, tbl, row_id, col, winner_value, winner_hlc, "
                    f"winner_site, loser_value, loser_hlc, loser_site, incoming_won, created_at) FROM STDIN"
                ) as copy:
                    for seq, entry in zip(seqs, entries):
                        for c in entry.conflicts:
                            conflicts += 1
                            await copy.write_row(
                                (
                                    c.id, tenant, seq, c.table, c.row_id, c.column,
                                    _encode(c.winner.value), c.winner.hlc, c.winner.site,
                                    _encode(c.loser.value), c.loser.hlc, c.loser.site,
                                    c.incoming_won, created_at,
                                )
                            )  # fmt: skip
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, tenant))
        return seqs, conflicts

    async def _record_refusals(
        self,
        conn: psycopg.AsyncConnection,
        tenant: str,
        site: bytes,
        refused: list[tuple[p.LocalTx, Refused]],
    ) -> list[p.Rejection]:
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {SCHEMA}.rejections (tenant, site, tx, first_seq, last_seq, code, message, changes) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (tenant, site, tx.tx, tx.changes[0].seq, tx.changes[-1].seq, r.code, r.message, _encode(tx))
                    for tx, r in refused
                ],
            )
        for tx, r in refused:
            log.info("refused transaction %s of tenant %r: %s", tx.tx, tenant, r)
        return [p.Rejection(tx=tx.tx, code=r.code, message=r.message) for tx, r in refused]

    # --- the log --------------------------------------------------------------

    async def read_log(self, tenant: str, after: int, *, limit: int = 200) -> tuple[list[tuple[int, p.ServerTx]], bool]:
        """The tenant's log entries after ``after``, oldest first, and whether more follow."""
        entries, more, _ = await self.read_entries(tenant, after, limit=limit)
        return [(entry.seq, entry.tx) for entry in entries], more

    async def read_entries(
        self, tenant: str, after: int, *, limit: int = 200
    ) -> tuple[list[shapes.LogEntry], bool, int]:
        """The tenant's log entries after ``after``, oldest first; whether more
        follow; and the oldest position the log serves (read in one statement,
        so a compaction that removed entries is seen with its new horizon)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT coalesce((SELECT oldest FROM {SCHEMA}.log_horizon WHERE tenant = %(t)s), 0), "
                f"l.seq, l.payload, l.routing FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
                f"SELECT seq, payload, routing FROM {SCHEMA}.change_log WHERE tenant = %(t)s AND seq > %(a)s "
                f"ORDER BY seq LIMIT %(n)s) AS l ON true",
                {"t": tenant, "a": after, "n": limit + 1},
            )
            found = await cur.fetchall()
        oldest = found[0][0] if found else 0
        found = [row for row in found if row[1] is not None]
        more = len(found) > limit
        entries = [
            shapes.LogEntry(seq, _decode_tx(payload), shapes.decode_keys(routing))
            for _, seq, payload, routing in found[:limit]
        ]
        return entries, more, oldest

    # --- snapshots ------------------------------------------------------------

    async def read_snapshot(
        self,
        tenant: str,
        shape: shapes.ShapeFilter,
        after_id: str,
        *,
        limit: int = 2_000,
        max_bytes: int = 1 << 20,
        position: bool = False,
    ) -> tuple[server_session.SnapshotRows, int | None, bool]:
        """One chunk of a shape's live rows with ids after ``after_id``, by id
        (keyset pagination), every cell with its clock, and the conflict
        records of the shape's rows in the chunk's id range (live or deleted,
        resolved or not: a replica that follows the log holds them all); with
        ``position``, first the log position the chunk is consistent with (the
        rows are read after it, so they hold at least everything up to it).
        Returns the chunk, the position (or None) and whether the shape has no
        rows after these.

        The chunk after this one is read ahead, while this one is sent and
        applied (the caller asks for it only once this one is on its way), so
        PostgreSQL works while the client does. It is read later than this
        one, which a snapshot allows (every chunk after the first may hold
        newer rows; the log after the position brings the rest). Only the
        reader of this chunk gets it: the chunk's end id handed back carries a
        ticket, which the next read brings back (another snapshot, whose
        position may be newer than the read ahead, never meets it)."""
        ticket = getattr(after_id, "ticket", None)
        ahead = None if position or ticket is None else self._read_ahead.pop((ticket, shape, limit, max_bytes), None)
        if ahead is not None:
            chunk, at, exhausted = await ahead
        else:
            chunk, at, exhausted = await self._read_chunk(tenant, shape, str(after_id), limit, max_bytes, position)
        if not exhausted:
            end = _ChunkEnd(chunk.last_id)
            end.ticket = next(_TICKETS)
            self._read_next((end.ticket, shape, limit, max_bytes), tenant, shape, chunk.last_id, limit, max_bytes)
            chunk.last_id = end
        return chunk, at, exhausted

    def _read_next(
        self, key: tuple[Any, ...], tenant: str, shape: shapes.ShapeFilter, after_id: str, limit: int, max_bytes: int
    ) -> None:
        while len(self._read_ahead) >= _READ_AHEAD_MAX:
            # Chunks nobody asked for (their client left): the oldest go.
            self._read_ahead.pop(next(iter(self._read_ahead))).cancel()
        task = asyncio.ensure_future(self._read_chunk(tenant, shape, after_id, limit, max_bytes, False))
        task.add_done_callback(_retrieved)
        self._read_ahead[key] = task

        def expire() -> None:
            if self._read_ahead.get(key) is task:
                del self._read_ahead[key]
                task.cancel()

        asyncio.get_running_loop().call_later(_READ_AHEAD_SECONDS, expire)

    async def _read_chunk(
        self, tenant: str, shape: shapes.ShapeFilter, after_id: str, limit: int, max_bytes: int, position: bool
    ) -> tuple[server_session.SnapshotRows, int | None, bool]:
        table = self.catalog.tables[shape.table]
        view = table.full
        clauses, params = snapshot_filter(table, shape)
        # Deleted rows too, whole: a replica may hold a row the snapshot would
        # otherwise leave out (one it pushed before its snapshot began, deleted
        # elsewhere since, a delete older than the snapshot's position), and a
        # row inserted again later carries in the log only the cells that
        # changed, so a replica needs every cell the tombstone keeps.
        where = f" WHERE tenant = %s AND id > %s{clauses} ORDER BY id LIMIT %s"
        select, readers = _snapshot_select(view)
        async with self.pool.connection() as conn, conn.transaction():
            # Timestamps are read as PostgreSQL's ISO text (much cheaper for it
            # than to_char) and put in canonical form here; the style is set
            # for this transaction only.
            await conn.execute("SET LOCAL datestyle = 'ISO, YMD'")
            at = None
            if position:
                # Never before the horizon: the log up to it may be gone entirely.
                cur = await conn.execute(
                    f"SELECT greatest((SELECT coalesce(max(seq), 0) FROM {SCHEMA}.change_log WHERE tenant = %(t)s), "
                    f"(SELECT coalesce(max(oldest), 0) FROM {SCHEMA}.log_horizon WHERE tenant = %(t)s))",
                    {"t": tenant},
                )
                found = await cur.fetchone()
                assert found is not None
                at = found[0]
            args = (tenant, after_id, *params, limit + 1)
            cur = await conn.execute(select + where, args)
            records = await cur.fetchall()
            try:
                rows, columns, taken = self._snapshot_rows(shape.table, view, readers, records, limit, max_bytes)
            except _OddTimestamp:
                # A timestamp the canonical form does not hold as ISO text
                # gives (a year past 9999, infinity): the chunk as to_char reads it.
                cur = await conn.execute(view.select_all + where, args)
                records = await cur.fetchall()
                rows, columns, taken = self._snapshot_rows(shape.table, view, view._readers, records, limit, max_bytes)
            exhausted = len(records) <= taken
            last_id = records[taken - 1][0] if taken else ""
            # The chunk covers the ids after after_id up to its last row (to
            # the end when it is the shape's last): the records of the rows in that range.
            upto = None if exhausted else last_id
            conflicts = await self._snapshot_conflicts(conn, tenant, table, shape, clauses, params, after_id, upto)
        return server_session.SnapshotRows(rows, conflicts, last_id, columns), at, exhausted

    async def _snapshot_conflicts(
        self,
        conn: psycopg.AsyncConnection,
        tenant: str,
        table: Any,
        shape: shapes.ShapeFilter,
        clauses: str,
        params: list[Any],
        after_id: str,
        upto: str | None,
    ) -> list[p.ConflictRecord]:
        sql = (
            f"SELECT id::text, row_id, col, winner_value, winner_hlc, winner_site, loser_value, loser_hlc, "
            f"loser_site, incoming_won, created_at FROM {SCHEMA}.conflicts "
            f"WHERE tenant = %s AND tbl = %s AND row_id > %s"
        )
        args: list[Any] = [tenant, table.name, after_id]
        if upto is not None:
            sql += " AND row_id <= %s"
            args.append(upto)
        if clauses:
            # A filtered shape: the rows the table holds (live or tombstones) that match it.
            sql += f" AND row_id IN (SELECT id FROM {table.qualified} WHERE tenant = %s{clauses})"
            args += [tenant, *params]
        cur = await conn.execute(sql + " ORDER BY id", args)
        return [
            p.ConflictRecord(
                id=cid, table=table.name, row_id=row_id, column=col,
                winner_value=_decode_value(winner_value), winner_hlc=winner_hlc, winner_site=bytes(winner_site),
                loser_value=_decode_value(loser_value), loser_hlc=loser_hlc, loser_site=bytes(loser_site),
                incoming_won=incoming_won, created_at=schema.format_timestamp(created_at),
            )  # fmt: skip
            for (cid, row_id, col, winner_value, winner_hlc, winner_site, loser_value, loser_hlc, loser_site,
                 incoming_won, created_at) in await cur.fetchall()
        ]  # fmt: skip

    @staticmethod
    def _snapshot_rows(
        table_name: str,
        view: Any,
        readers: Sequence[tuple[int, Callable[[Any], Any]]],
        records: list[tuple[Any, ...]],
        limit: int,
        max_bytes: int,
    ) -> tuple[list[p.RowChange], p.Columns | None, int]:
        """The chunk's rows from ``records`` (as ``select_all`` reads them):
        live rows whose cells share one clock column by column, the others
        (and deleted rows, with every cell) as RowChanges; and how many
        records were taken (at most ``limit``, and no more than the estimated
        ``max_bytes`` of RowChanges)."""
        records = records[:limit]
        if not records:
            return [], None, 0
        count = len(view.columns)
        columns = list(zip(*records))
        # The size of the chunk as RowChanges (the larger form): per cell, a
        # name and a clock; plus the text and bytes values.
        per_row = 48 * (count + 1)
        size = per_row * len(records) + _value_size(view, columns[1 : count + 1])
        if size >= max_bytes:
            # Stop at the row that crosses max_bytes (row by row: the rare large chunk).
            size, taken = 0, 0
            for record in records:
                taken += 1
                size += per_row + _value_size(view, [(v,) for v in record[1 : count + 1]])
                if size >= max_bytes:
                    break
            if taken < len(records):
                records = records[:taken]
                columns = list(zip(*records))
        taken = len(records)
        values = [list(column) for column in columns[1 : count + 1]]
        for i, reader in readers:
            values[i] = _read_column(values[i], reader)
        ids = list(columns[0])
        deleted = columns[count + 1]
        hlcs, sites, blobs = (list(c) for c in columns[count + 2 : count + 5])
        rows: list[p.RowChange] = []
        mixed = [k for k, blob in enumerate(blobs) if blob or deleted[k]]
        if mixed:
            # Rows whose cells have clocks of their own, and deleted rows: as RowChanges.
            names = view.names
            for k in mixed:
                extra = clocks.overrides(blobs[k]) if blobs[k] else {}
                row_values = [column[k] for column in values]
                row_values.append(deleted[k])
                base = (hlcs[k], sites[k])
                cells = {
                    name: (value, *extra[name]) if name in extra else (value, *base)
                    for name, value in zip(names, row_values)
                }
                rows.append(p.RowChange(table_name, ids[k], _written(cells)))
            keep = sorted(set(range(taken)) - set(mixed))
            ids = [ids[k] for k in keep]
            values = [[column[k] for k in keep] for column in values]
            hlcs = [hlcs[k] for k in keep]
            sites = [sites[k] for k in keep]
        index: dict[bytes, int] = {}
        site_index = [index.setdefault(site, len(index)) for site in sites]
        table = p.Columns(table_name, list(view.columns), ids, values, hlcs, list(index), site_index)
        return rows, table, taken

    # --- conflicts ------------------------------------------------------------

    async def mark_resolved(self, tenant: str, conflict_ids: Sequence[str], *, by: str) -> int:
        """Mark a tenant's conflict records resolved; ids of other tenants or
        that do not exist are ignored. Returns how many were marked."""
        ids = [i for i in conflict_ids if schema.is_uuid(i)]
        if not ids:
            return 0
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE {SCHEMA}.conflicts SET resolved_at = now(), resolved_by = %s "
                f"WHERE tenant = %s AND id = ANY(%s::uuid[]) AND resolved_at IS NULL",
                (by, tenant, ids),
            )
            return cur.rowcount

    async def read_rows(self, tenant: str, table: str, ids: Sequence[str]) -> list[p.RowChange]:
        """The tenant's rows of ``table`` with these ids, whole: every cell with
        its clock, deleted rows as tombstones with every cell; ids not held
        are left out. By id."""
        if not ids:
            return []
        view = self.catalog.tables[schema.table(table).name].full
        async with self.pool.connection() as conn:
            cur = await conn.execute(view.select_rows + " ORDER BY id", (tenant, list(ids)))
            records = await cur.fetchall()
        out = []
        for record in records:
            row_id, row = view.row_from_db(record)
            cells = {name: (cell.value, cell.hlc, bytes(cell.site)) for name, cell in row.cells.items()}
            out.append(p.RowChange(table, row_id, _written(cells)))
        return out

    async def cells(self, tenant: str, table: str, row_id: str) -> dict[str, Any] | None:
        """Every cell of one row as the merge sees it ({column: Cell}), or None."""
        view = self.catalog.tables[schema.table(table).name].full
        async with self.pool.connection() as conn:
            cur = await conn.execute(view.select_rows, (tenant, [row_id]))
            found = await cur.fetchone()
        return None if found is None else view.row_from_db(found)[1].cells

    # --- health ---------------------------------------------------------------

    async def server_site(self) -> bytes:
        """This database's own site id, which stamps the server's own writes."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT value FROM {SCHEMA}.server_meta WHERE key = 'site_id'")
            found = await cur.fetchone()
        assert found is not None, "server_meta has no site_id: the schema is not migrated"
        return bytes.fromhex(found[0])

    async def ping(self) -> None:
        async with self.pool.connection(timeout=5) as conn:
            await conn.execute("SELECT 1")

    async def log_stats(self) -> dict[str, int]:
        """The log's last position and its number of entries (estimated when large)."""
        async with self.pool.connection(timeout=5) as conn:
            # Counting a long log is slow: past 100k entries, take the planner's estimate.
            cur = await conn.execute(
                f"SELECT (SELECT coalesce(max(seq), 0) FROM {SCHEMA}.change_log), "
                f"(SELECT CASE WHEN reltuples < 100000 THEN (SELECT count(*) FROM {SCHEMA}.change_log) "
                f"ELSE reltuples::bigint END FROM pg_class WHERE oid = '{SCHEMA}.change_log'::regclass)"
            )
            found = await cur.fetchone()
        assert found is not None
        return {"position": found[0], "rows": found[1]}


_SIZED = {"text": 1, "timestamp": 1, "json": 1, "blob": 1, "vector": 4}  # bytes per len() unit as read


class _OddTimestamp(ValueError):
    """A timestamp whose ISO text is not YYYY-MM-DD HH:MM:SS[.f]."""


def _timestamp(text: str) -> str:
    """PostgreSQL's ISO text of a UTC timestamp ('2025-07-17 10:00:00.5')
    in canonical form ('2025-07-17T10:00:00.500000Z')."""
    size = len(text)
    if 19 <= size <= 26 and size != 20 and text[10] == " " and text[4] == "-" and (size == 19 or text[19] == "."):
        return f"{text[:10]}T{text[11:19]}.{text[20:]:0<6}Z"
    raise _OddTimestamp(text)


_SELECTS: dict[tuple[Any, ...], tuple[str, list[tuple[int, Callable[[Any], Any]]]]] = {}


def _snapshot_select(view: Any) -> tuple[str, list[tuple[int, Callable[[Any], Any]]]]:
    """The snapshot's SELECT of a view (every column, then _deleted and the
    clocks, as ``select_all``) and the readers of its columns, timestamps
    read as ISO text."""
    key = (view.table.qualified, *(view.table._expr[name] for name in view.columns))
    found = _SELECTS.get(key)
    if found is None:
        tbl = view.table.table
        exprs, readers = [], list(view._readers)
        for i, name in enumerate(view.columns):
            if tbl.column(name).type == "timestamp":
                exprs.append(f"({name} AT TIME ZONE 'UTC')::text")
                readers.append((i, _timestamp))
            else:
                exprs.append(view.table._expr[name])
        select = f"SELECT id, {''.join(e + ', ' for e in exprs)}_deleted::int, _hlc, _site, _clocks FROM {view.table.qualified}"
        found = _SELECTS[key] = (select, readers)
    return found


# Chunks read ahead and held at once, across the process's connections (each
# up to half the frame limit): past it, the oldest go, and their readers read
# afresh. A chunk not asked for within the time limit (its client left, or is
# very slow) is dropped too.
_READ_AHEAD_MAX = 64
_READ_AHEAD_SECONDS = 10.0


_TICKETS = itertools.count(1)


class _ChunkEnd(str):
    """The id a snapshot chunk ended at, with the ticket of the next chunk read ahead."""

    ticket: int


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A read ahead that failed or was dropped: its error is the reader's, if one asks."""
    if not task.cancelled():
        task.exception()


def _written(cells: dict[str, tuple[Any, int, bytes]]) -> dict[str, tuple[Any, int, bytes]]:
    """A row's cells without those nobody wrote (at the zero clock, which a row
    merged before partial inserts were completed may hold): a replica fills
    them itself with the same default at the same zero clock, and takes no
    cell at that clock from the server."""
    if all(cell[1] for cell in cells.values()):
        return cells
    return {name: cell for name, cell in cells.items() if cell[1]}


def _value_size(view: Any, columns: Sequence[Sequence[Any]]) -> int:
    """The length of a chunk's text, bytes and vector values, column by
    column (``columns``: the view's columns as read, before the readers)."""
    size = 0
    tbl = view.table.table
    for name, column in zip(view.columns, columns):
        unit = _SIZED.get(tbl.column(name).type)
        if unit is not None:
            size += unit * sum(map(len, filter(None, column)))
    return size


def _read_column(column: list[Any], reader: Callable[[Any], Any]) -> list[Any]:
    """A column's values through ``reader``; values repeat across rows (a JSON
    default, a shared setting), so each distinct one is read once."""
    try:
        read = {value: reader(value) for value in set(column) if value is not None}
    except TypeError:  # values that do not hash (arrays): one by one
        return [None if value is None else reader(value) for value in column]
    read[None] = None
    return list(map(read.__getitem__, column))


def _change_at(txs: Sequence[p.LocalTx], seq: int) -> p.LocalChange:
    for tx in reversed(txs):
        for change in tx.changes:
            if change.seq == seq:
                return change
    raise AssertionError(f"no change {seq} in the push")  # pragma: no cover - the caller took seq from it


def _same_history(txs: Sequence[p.LocalTx], acked: int, known: bytes) -> None:
    """Raise :class:`SiteReused` when a push holds a change at the site's acked
    sequence that is not the one merged there (whose fingerprint is ``known``):
    the changes up to it would be skipped as merged, but they are another
    file's. (A push that starts after the acked sequence says nothing of it.)"""
    if not known or not txs or not txs[0].changes or txs[0].changes[0].seq > acked:
        return
    for tx in txs:
        for change in tx.changes:
            if change.seq == acked:
                if _fingerprint(change) != known:
                    raise SiteReused(
                        f"the change at sequence {acked} of this site is not the one the server merged there: "
                        f"another copy of this replica file synced; this one must take a new site id"
                    )
                return


def _renumber(txs: Sequence[p.LocalTx], *, after: int) -> list[p.LocalTx]:
    out, seq = [], after
    for tx in txs:
        changes = []
        for change in tx.changes:
            seq += 1
            changes.append(msgspec.structs.replace(change, seq=seq))
        out.append(p.LocalTx(tx.tx, changes))
    return out


@asynccontextmanager
async def open_store(database_url: str, *, pool_size: int = 2, **options: Any) -> AsyncIterator[ChangeStore]:
    """A change store on its own small pool, for tools and tests (the schema must be migrated)."""
    async with AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=pool_size,
        kwargs=CONNECTION_OPTIONS,
        configure=prepare_connection,
        open=False,
    ) as pool:
        async with pool.connection() as conn:
            catalog = await load_catalog(conn)
        yield ChangeStore(pool, catalog, **options)


_PG_ARRAY = {"text": "text", "integer": "bigint", "real": "double precision", "boolean": "boolean",
             "timestamp": "timestamptz", "blob": "bytea"}  # fmt: skip


def snapshot_filter(table: Any, shape: shapes.ShapeFilter) -> tuple[str, list[Any]]:
    """SQL conditions (and their parameters) selecting a shape's rows; the
    column names come from the schema, the values are parameters."""
    clauses, params = "", []
    for column, allowed in shape.where:
        col = table.table.column(column)
        values = [v for v in allowed if v is not None]
        if col.type == "boolean":
            values = [bool(v) for v in values]
        cast = _PG_ARRAY.get(col.type, "text")
        condition = f"{col.name} = ANY(%s::{cast}[])"
        params.append(values)
        if None in allowed:
            condition = f"({condition} OR {col.name} IS NULL)"
        clauses += f" AND {condition}"
    return clauses, params


def _pg_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    return diag.message_primary or str(exc).splitlines()[0]

