"""Publish rows written into PostgreSQL by plain SQL, so they reach clients too.

Server migration 0004 puts triggers on every synced table. A write that is not
the server's merge (the merge marks its transactions with the transaction-local
setting ``syncstore.writer = 'server'``) is checked against the schema's rules,
its written cells are stamped with a clock of the "server SQL" site
(:data:`SQL_SITE`), and (tenant, table, row, columns) is queued in
``syncstore.direct_writes``, waking the servers with ``NOTIFY
syncstore_direct_writes``. This module, run by every server process, turns the
queue into change log entries:

- **Values read back by the server's own readers** (:mod:`syncstore_server.tables`):
  the log carries canonical values (compact sorted JSON, ISO timestamps,
  float32 vectors) exactly as a merge writes them, which SQL alone cannot make.
  Each cell goes with its clock, so a value read after a later merge changed
  it is just that newer cell, which every replica merges to the same result.
- **The log's rule**: entries are appended under the tenant's log lock with
  positions drawn under it, as the merge does (:mod:`syncstore_server.store`),
  so a reader never passes over a late commit; ``NOTIFY syncstore_changes``
  then wakes the streams of every instance.
- **Shapes**: each entry carries routing keys as a merge's does
  (:class:`syncstore.core.shapes.RowKeys`): the triggers keep the old values of
  the indexed columns a write changed, so a row moving into or out of a
  shape is sent whole to its subscribers (one moving out still reaches the
  old shape's).
- **Transactions stay whole**: the rows one direct transaction wrote become one
  server transaction (split only when it is larger than ``max_entry_rows`` rows
  or ``max_entry_bytes``, so no client is sent a frame it cannot take: then its
  entries form a group, ``ServerTx.group_end``, which clients apply whole; a
  transaction larger than a publishing batch goes in several groups).
- **One publisher at a time** across instances (a transaction-level advisory
  lock: the others wait, then find what is left), so each queued write is
  published once, in queue order.
  A sweep every ``sweep_interval_s`` covers a publisher killed mid-way and
  notifications missed while the listening connection was down.

Nothing here blocks a merge for long: the publisher never locks synced rows,
and direct writers never take the log lock, so neither can deadlock the other.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, NamedTuple

import msgspec
import psycopg

from syncstore import schema
from syncstore.core import protocol as p
from syncstore.core import shapes
from syncstore.errors import ValidationError

from syncstore_server import background
from syncstore_server.notify import Notifier
from syncstore_server.store import CHANNEL, LOG_LOCK_CLASS, ChangeStore
from syncstore_server.tables import SCHEMA

log = logging.getLogger("syncstore.server.direct_writes")

SQL_SITE = bytes.fromhex("73796e6373746f72652d73716c000000")  # b"syncstore-sql\0\0\0", as syncstore.sql_site()
QUEUE_CHANNEL = "syncstore_direct_writes"  # NOTIFY channel of the triggers (payload '')
PUBLISH_LOCK = (0x5344, 0)  # ("SD", 0): one publisher at a time
DEFAULT_MAX_ENTRY_ROWS = 1_000
DEFAULT_MAX_ENTRY_BYTES = 1 << 20

_encode = msgspec.msgpack.encode


class Queued(NamedTuple):
    id: int
    tenant: str
    xid: int
    table: str
    row_id: str
    columns: list[str]
    before: dict[str, Any] | None  # old values of the indexed columns it changed; None: an insert


class _Touch:
    """What one direct transaction did to one row."""

    __slots__ = ("table", "row_id", "columns", "before", "created", "after")

    def __init__(self, table: str, row_id: str):
        self.table = table
        self.row_id = row_id
        self.columns: set[str] = set()
        self.before: dict[str, Any] = {}  # indexed values before the transaction (those it changed)
        self.created = False
        self.after: dict[str, Any] = {}  # indexed values after it


class DirectWrites:
    """The publisher of one server process: ``await start()``, ``await stop()``."""

    def __init__(
        self,
        store: ChangeStore,
        conninfo: str,
        *,
        batch: int = 5_000,
        max_entry_rows: int = DEFAULT_MAX_ENTRY_ROWS,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        sweep_interval_s: float = 5.0,
    ):
        self.store = store
        self.batch = batch
        self.max_entry_rows = max_entry_rows
        self.max_entry_bytes = max_entry_bytes
        self.sweep_interval_s = sweep_interval_s
        self._notifier = Notifier(conninfo, channel=QUEUE_CHANNEL, application_name="syncstore-server-direct-writes")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0  # log entries written by this process

    async def start(self) -> None:
        async with self.store.pool.connection() as conn:
            cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.direct_writes",))
            found = await cur.fetchone()
        if not (found and found[0]):  # a schema older than migration 0004
            log.warning("this database has no direct-write queue: rows written by plain SQL are not published")
            return
        self._notifier.subscribe("", self._wake.set)
        await self._notifier.start()
        self._wake.set()  # whatever was queued while no server ran
        self._task = asyncio.create_task(self._run(), name="syncstore-direct-writes")

    async def stop(self) -> None:
        await background.stop(self._task, what="the direct-write publisher")
        self._task = None
        await self._notifier.stop()

    async def _run(self) -> None:
        backoff = 0.1
        while not background.stopping():
            try:
                await asyncio.wait_for(self._wake.wait(), self.sweep_interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self.publish() >= self.batch:
                    pass  # a full batch: more may be queued
                backoff = 0.1
            except Exception as exc:  # the publisher never stops: direct writes would wait for ever
                if isinstance(exc, psycopg.Error):
                    log.warning("publishing direct writes failed (%s); will retry", type(exc).__name__)
                else:
                    log.exception("publishing direct writes failed; will retry")
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, self.sweep_interval_s)
                self._wake.set()

    async def publish(self) -> int:
        """Publish what is queued now (up to ``batch`` rows); returns the rows taken."""
        async with self.store.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", PUBLISH_LOCK)
            # Whole direct transactions, oldest first (a huge one may be cut at ``batch``).
            cur = await conn.execute(
                f"WITH firsts AS (SELECT xid, min(id) AS first FROM {SCHEMA}.direct_writes "
                f"GROUP BY xid ORDER BY first LIMIT %s) "
                f"SELECT d.id, d.tenant, d.xid::text, d.tbl, d.row_id, d.cols, d.before "
                f"FROM {SCHEMA}.direct_writes AS d JOIN firsts USING (xid) ORDER BY d.id LIMIT %s",
                (self.batch, self.batch),
            )
            queued = [Queued(r[0], r[1], int(r[2]), *r[3:]) for r in await cur.fetchall()]
            if not queued:
                return 0
            cells = await self._read_cells(conn, queued)
            entries = self._entries(queued, cells)
            for tenant in sorted(entries):
                await self._append(conn, tenant, entries[tenant])
            await conn.execute(f"DELETE FROM {SCHEMA}.direct_writes WHERE id = ANY(%s)", ([q.id for q in queued],))
        written = sum(len(e) for e in entries.values())
        self.published += written
        log.debug("published %d direct writes as %d log entries", len(queued), written)
        return len(queued)

    async def _read_cells(
        self, conn: psycopg.AsyncConnection, queued: list[Queued]
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The current cells of every queued row: {(tenant, table, id): {column: Cell}}."""
        wanted: dict[tuple[str, str], set[str]] = {}
        for q in queued:
            wanted.setdefault((q.tenant, q.table), set()).add(q.row_id)
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for (tenant, table), ids in sorted(wanted.items()):
            pg_table = self.store.catalog.tables.get(table)
            if pg_table is None:  # not a synced table of this server version
                log.error("direct writes to unknown table %r dropped", table)
                continue
            view = pg_table.full
            cur = await conn.execute(view.select_rows, (tenant, sorted(ids)))
            for record in await cur.fetchall():
                row_id, row = view.row_from_db(record)
                found[(tenant, table, row_id)] = row.cells
        return found

    def _entries(
        self, queued: list[Queued], cells: dict[tuple[str, str, str], dict[str, Any]]
    ) -> dict[str, list[tuple[int, list[p.RowChange], list[shapes.RowKeys]]]]:
        """Per tenant, the log entries to write: (origin transaction, row changes, routing keys)."""
        by_tx: dict[tuple[str, int], dict[tuple[str, str], _Touch]] = {}
        history: dict[tuple[str, str, str], list[_Touch]] = {}
        for q in queued:  # in queue order: transactions by their first write
            rows = by_tx.setdefault((q.tenant, q.xid), {})
            touch = rows.get((q.table, q.row_id))
            if touch is None:
                touch = rows[(q.table, q.row_id)] = _Touch(q.table, q.row_id)
                history.setdefault((q.tenant, q.table, q.row_id), []).append(touch)
                touch.created = q.before is None
            touch.columns.update(q.columns)
            for column, value in (q.before or {}).items():
                touch.before.setdefault(column, _canonical(q.table, column, value))
        # Each transaction's indexed values after it: the row's values now, with
        # those of later transactions (in this batch) undone.
        for (tenant, table, row_id), touches in history.items():
            held = cells.get((tenant, table, row_id)) or {}
            after = {c: held[c][0] for c in schema.TABLES[table].indexes if c in held}
            for touch in reversed(touches):
                touch.after = after
                after = {**after, **touch.before}
        out: dict[str, list[tuple[int, list[p.RowChange], list[shapes.RowKeys]]]] = {}
        for (tenant, xid), rows in by_tx.items():
            changes: list[p.RowChange] = []
            keys: list[shapes.RowKeys] = []
            size = 0
            for touch in rows.values():
                held = cells.get((tenant, touch.table, touch.row_id))
                if held is None:
                    continue  # the row is gone (removed by the server itself): nothing to send
                change = _row_change(touch.table, touch.row_id, touch.columns, held)
                if change is None:
                    continue
                change_size = len(_encode(change))
                if changes and (len(changes) >= self.max_entry_rows or size + change_size > self.max_entry_bytes):
                    out.setdefault(tenant, []).append((xid, changes, keys))
                    changes, keys, size = [], [], 0
                changes.append(change)
                keys.append(_routing(touch, held))
                size += change_size
            if changes:
                out.setdefault(tenant, []).append((xid, changes, keys))
        return out

    async def _append(
        self,
        conn: psycopg.AsyncConnection,
        tenant: str,
        entries: list[tuple[int, list[p.RowChange], list[shapes.RowKeys]]],
    ) -> None:
        # The tenant's log lock, held to commit, then positions: as the merge does
        # (store.ChangeStore._append_log), so entries commit in position order.
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOG_LOCK_CLASS, tenant))
        cur = await conn.execute(
            f"SELECT nextval('{SCHEMA}.change_log_seq') FROM generate_series(1, %s)", (len(entries),)
        )
        seqs = sorted(row[0] for row in await cur.fetchall())
        created_at = schema.now_iso()
        async with conn.cursor() as cur:
            async with cur.copy(
                f"COPY {SCHEMA}.change_log (seq, tenant, origin_site, origin_tx, tables, payload, created_at, routing) "
                f"FROM STDIN"
            ) as copy:
                ends = _group_ends(seqs, [xid for xid, _, _ in entries])
                for seq, group_end, (xid, changes, keys) in zip(seqs, ends, entries):
                    payload = _encode(p.ServerTx(seq=seq, changes=changes, group_end=group_end))
                    tables = sorted({c.table for c in changes})
                    routing = shapes.encode_keys(keys)
                    await copy.write_row((seq, tenant, SQL_SITE, xid, tables, payload, created_at, routing))
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, tenant))


def _group_ends(seqs: list[int], xids: list[int]) -> list[int]:
    """Per entry, the position of the last entry of its direct transaction when
    it was split into several (its group), else 0."""
    ends = [0] * len(seqs)
    start = 0
    for i in range(1, len(seqs) + 1):
        if i == len(seqs) or xids[i] != xids[start]:
            if i - start > 1:
                ends[start:i] = [seqs[i - 1]] * (i - start)
            start = i
    return ends


def _row_change(table: str, row_id: str, columns: set[str], held: dict[str, Any]) -> p.RowChange | None:
    """The written cells of one row as clients receive them; a value the schema
    refuses (the triggers check values, so only a rule they lack) is left out
    rather than sent to every client to fail there."""
    tbl = schema.TABLES[table]
    out: dict[str, tuple[Any, int, bytes]] = {}
    for name in sorted(columns):
        cell = held.get(name)
        if cell is None or cell[1] <= 0:
            continue  # not a column, or a cell nobody wrote (the zero clock)
        if name != "_deleted":
            try:
                schema.to_storage(tbl.column(name), cell[0], table_name=table)
            except ValidationError as exc:
                log.error("direct write to %s row %s not sent: %s", table, row_id, exc)
                continue
        out[name] = (cell[0], cell[1], cell[2])
    return p.RowChange(table, row_id, out) if out else None


def _routing(touch: _Touch, held: dict[str, Any]) -> shapes.RowKeys:
    """The row's routing keys for shapes (see :class:`syncstore.core.shapes.RowKeys`)."""
    if touch.created:
        return shapes.RowKeys(touch.table, touch.row_id, touch.after, None, None)
    moved = {c: v for c, v in touch.before.items() if touch.after.get(c) != v}
    # A row moving into or out of a shape goes to its subscribers whole.
    full = {name: (cell[0], cell[1], cell[2]) for name, cell in held.items() if cell[1] > 0} if moved else None
    return shapes.RowKeys(touch.table, touch.row_id, touch.after, moved, full)


def _canonical(table: str, column: str, value: Any) -> Any:
    """An old value as the trigger saw it (JSON) in canonical form, as routing compares."""
    if value is None:
        return None
    try:
        return schema.to_storage(schema.TABLES[table].column(column), value, table_name=table)
    except ValidationError:
        return value
