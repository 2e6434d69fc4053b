"""Compaction of the change log: drop superseded cell versions, collect old tombstones.

Two steps per tenant, both safe while the server runs:

1. **Superseded versions.** The log is walked newest first. A cell (table,
   row, column) already met in a newer entry is dropped from older entries:
   the newer version wins on every replica anyway. An entry left with no
   cells is deleted. A row whose indexed values moved in an entry keeps its
   (possibly empty) change there: its routing keys hold the whole row, which
   a subscriber whose shape it entered or left must still receive. Conflict records
   older than the retention window are dropped from the log (they stay in the
   ``conflicts`` table). Replaying the compacted log gives every replica the
   same cells as replaying the full log, from any position: every cell's
   newest version is still there, after any position that preceded it.
2. **Tombstones.** A row deleted longer ago than the retention window (its
   newest ``_deleted`` cell is 1, in an entry older than the window) is
   collected, in one transaction: the row leaves its table, its cells leave
   the log, the log up to its delete goes, and the tenant's horizon
   (``log_horizon.oldest``) rises to that delete's position. A client whose
   cursor is older than the horizon is told to re-snapshot (it may never have
   seen the delete). A collected row never comes back: the merge creates rows
   only from inserts (``_deleted: 0``), so a late update to it is dropped.

One compaction per tenant at a time (a session advisory lock); several server
instances may run periodic compaction on one database.

The decisions are pure (:class:`LogCompaction`, :func:`strip_rows`) so that
properties can be checked without a database; :func:`compact_tenant` drives
them against PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from typing import Any, Iterable, NamedTuple

import msgspec

from syncstore.core import protocol as p
from syncstore.core import shapes
from syncstore.core.merge import DELETED

from syncstore_server import background, staging
from syncstore_server.tables import SCHEMA

log = logging.getLogger("syncstore.server.compaction")

COMPACTION_LOCK_CLASS = 0x5354  # advisory lock key space; the key is hashtext(tenant)
DEFAULT_RETENTION_S = 7 * 86_400
PAGE = 500  # log entries read at a time

RowKey = tuple[str, str]

_encode = msgspec.msgpack.encode
_decode_tx = msgspec.msgpack.Decoder(p.ServerTx).decode


class CompactionResult(NamedTuple):
    tenant: str
    entries_seen: int
    entries_rewritten: int
    entries_deleted: int
    cells_dropped: int
    rows_collected: int
    oldest: int  # the tenant's horizon afterwards

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


# --- the pure part ---------------------------------------------------------------------


class LogCompaction:
    """Walk one tenant's log newest first (:meth:`visit`), deciding what each entry keeps.

    ``cutoff``: entries created before it are older than the retention window
    (their conflict records go; their tombstones may be collected).
    """

    def __init__(self, *, cutoff: Any):
        self.cutoff = cutoff
        self._cells: dict[RowKey, set[str]] = {}
        self.entries_of: dict[RowKey, list[int]] = {}  # entries still holding cells of the row
        self.tombstones: dict[RowKey, int] = {}  # rows to collect -> the position of their delete
        self.cells_dropped = 0

    def visit(self, entry: shapes.LogEntry, created_at: Any) -> shapes.LogEntry | None:
        """The entry as compaction keeps it: the same object when unchanged,
        a new one when cells or conflicts went, None when nothing is left."""
        old = created_at < self.cutoff
        tx = entry.tx
        keys = {(k.table, k.id): k for k in entry.keys} if entry.keys else {}
        changes = []
        changed = False
        # Newest first within the entry too (a row written twice in one entry:
        # the later change is the newer one).
        for change in reversed(tx.changes):
            key = (change.table, change.id)
            seen = self._cells.get(key)
            if seen is None:
                seen = self._cells[key] = set()
                deleted = change.cells.get(DELETED)
                if deleted is not None and deleted[0] == 1 and old:
                    self.tombstones[key] = entry.seq
            kept = {name: cell for name, cell in change.cells.items() if name not in seen}
            seen.update(kept)
            if len(kept) != len(change.cells):
                changed = True
                self.cells_dropped += len(change.cells) - len(kept)
            row_keys = keys.get(key)
            moved = row_keys is not None and bool(row_keys.before)
            if kept or moved:
                changes.append(change if len(kept) == len(change.cells) else p.RowChange(change.table, change.id, kept))
                self.entries_of.setdefault(key, []).append(entry.seq)
        changes.reverse()
        conflicts = list(tx.conflicts)
        if old and conflicts:
            conflicts = []
            changed = True
        if not changed:
            return entry
        if not changes and not conflicts:
            return None
        rows = {(c.table, c.id) for c in changes} | {(c.table, c.row_id) for c in conflicts}
        kept_keys = None if entry.keys is None else [k for k in entry.keys if (k.table, k.id) in rows]
        kept = msgspec.structs.replace(tx, changes=changes, conflicts=conflicts)  # its group, if any, stays
        return shapes.LogEntry(entry.seq, kept, kept_keys)


def strip_rows(entry: shapes.LogEntry, rows: set[RowKey]) -> shapes.LogEntry | None:
    """The entry without anything about ``rows`` (collected tombstones); None if nothing is left."""
    tx = entry.tx
    changes = [c for c in tx.changes if (c.table, c.id) not in rows]
    conflicts = [c for c in tx.conflicts if (c.table, c.row_id) not in rows]
    if len(changes) == len(tx.changes) and len(conflicts) == len(tx.conflicts):
        return entry
    if not changes and not conflicts:
        return None
    keys = None if entry.keys is None else [k for k in entry.keys if (k.table, k.id) not in rows]
    return shapes.LogEntry(entry.seq, msgspec.structs.replace(tx, changes=changes, conflicts=conflicts), keys)


def compact_entries(
    entries: Iterable[tuple[shapes.LogEntry, Any]], *, cutoff: Any
) -> tuple[list[shapes.LogEntry], dict[RowKey, int]]:
    """Compact a whole log in memory (oldest first in, oldest first out), and
    the tombstones it would collect. What :func:`compact_tenant` does, for tests."""
    walk = LogCompaction(cutoff=cutoff)
    kept = []
    for entry, created_at in sorted(entries, key=lambda item: -item[0].seq):
        found = walk.visit(entry, created_at)
        if found is not None:
            kept.append(found)
    kept.reverse()
    return kept, walk.tombstones


# --- against PostgreSQL ------------------------------------------------------------------


async def compact_tenant(
    store: Any, tenant: str, *, retention_s: float = DEFAULT_RETENTION_S, now: dt.datetime | None = None
) -> CompactionResult | None:
    """Compact one tenant's log; None if another compaction of it is running."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(seconds=retention_s)
    async with store.pool.connection() as lock_conn:
        cur = await lock_conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (COMPACTION_LOCK_CLASS, tenant)
        )
        got = await cur.fetchone()
        if not got or not got[0]:
            return None
        try:
            return await _compact(store, tenant, cutoff)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (COMPACTION_LOCK_CLASS, tenant))


async def _compact(store: Any, tenant: str, cutoff: dt.datetime) -> CompactionResult:
    walk = LogCompaction(cutoff=cutoff)
    seen = rewritten = deleted = 0
    async with store.pool.connection() as conn:
        cur = await conn.execute(f"SELECT coalesce(max(seq), 0) FROM {SCHEMA}.change_log WHERE tenant = %s", (tenant,))
        found = await cur.fetchone()
        upper = (found[0] if found else 0) + 1
        while True:
            cur = await conn.execute(
                f"SELECT seq, payload, routing, created_at FROM {SCHEMA}.change_log "
                f"WHERE tenant = %s AND seq < %s ORDER BY seq DESC LIMIT %s",
                (tenant, upper, PAGE),
            )
            page = await cur.fetchall()
            if not page:
                break
            updates, removals = [], []
            for seq, payload, routing, created_at in page:
                seen += 1
                entry = shapes.LogEntry(seq, _decode_tx(payload), shapes.decode_keys(routing))
                result = walk.visit(entry, created_at)
                if result is None:
                    removals.append(seq)
                elif result is not entry:
                    updates.append(_row(result))
            upper = page[-1][0]
            async with conn.transaction():
                await _write(conn, tenant, updates, removals)
            rewritten += len(updates)
            deleted += len(removals)
        collected, oldest = await _collect(conn, store, tenant, walk)
        if not collected:
            cur = await conn.execute(f"SELECT oldest FROM {SCHEMA}.log_horizon WHERE tenant = %s", (tenant,))
            row = await cur.fetchone()
            oldest = row[0] if row else 0
            await conn.execute(
                f"INSERT INTO {SCHEMA}.log_horizon (tenant, compacted_at) VALUES (%s, now()) "
                f"ON CONFLICT (tenant) DO UPDATE SET compacted_at = now()",
                (tenant,),
            )
    result = CompactionResult(tenant, seen, rewritten, deleted, walk.cells_dropped, collected, oldest)
    log.info("compacted tenant %r: %s", tenant, result.to_dict())
    return result


async def _collect(conn: Any, store: Any, tenant: str, walk: LogCompaction) -> tuple[int, int]:
    """Collect the tombstones the walk found, in one transaction. Returns (rows, horizon)."""
    if not walk.tombstones:
        return 0, 0
    by_table: dict[str, list[str]] = {}
    for table, row_id in walk.tombstones:
        by_table.setdefault(table, []).append(row_id)
    async with conn.transaction():
        # The server's own delete, not a direct write: migration 0004's triggers
        # would keep the rows as tombstones (store.SERVER_WRITER).
        await conn.execute("SELECT set_config('syncstore.writer', 'server', true)")
        confirmed: set[RowKey] = set()
        for table in sorted(by_table):
            qualified = store.catalog.tables[table].qualified
            cur = await conn.execute(
                f"DELETE FROM {qualified} WHERE tenant = %s AND id = ANY(%s::text[]) AND _deleted RETURNING id",
                (tenant, sorted(by_table[table])),
            )
            confirmed.update((table, row_id) for (row_id,) in await cur.fetchall())
        if not confirmed:
            return 0, 0
        horizon = max(walk.tombstones[key] for key in confirmed)
        cur = await conn.execute(
            f"INSERT INTO {SCHEMA}.log_horizon AS h (tenant, oldest, compacted_at, rows_collected) "
            f"VALUES (%s, %s, now(), %s) ON CONFLICT (tenant) DO UPDATE SET "
            f"oldest = greatest(h.oldest, excluded.oldest), compacted_at = now(), "
            f"rows_collected = h.rows_collected + excluded.rows_collected RETURNING oldest",
            (tenant, horizon, len(confirmed)),
        )
        row = await cur.fetchone()
        oldest = row[0] if row else horizon
        # Nobody reads the log up to the horizon any more: it goes.
        await conn.execute(f"DELETE FROM {SCHEMA}.change_log WHERE tenant = %s AND seq <= %s", (tenant, oldest))
        # The collected rows' cells leave the rest of the log.
        positions = sorted({seq for key in confirmed for seq in walk.entries_of.get(key, ()) if seq > oldest})
        updates, removals = [], []
        if positions:
            cur = await conn.execute(
                f"SELECT seq, payload, routing FROM {SCHEMA}.change_log WHERE tenant = %s AND seq = ANY(%s) FOR UPDATE",
                (tenant, positions),
            )
            for seq, payload, routing in await cur.fetchall():
                entry = shapes.LogEntry(seq, _decode_tx(payload), shapes.decode_keys(routing))
                result = strip_rows(entry, confirmed)
                if result is None:
                    removals.append(seq)
                elif result is not entry:
                    updates.append(_row(result))
        await _write(conn, tenant, updates, removals)
    return len(confirmed), oldest


def _row(entry: shapes.LogEntry) -> tuple[Any, ...]:
    tables = sorted({c.table for c in entry.tx.changes} | {c.table for c in entry.tx.conflicts})
    routing = None if entry.keys is None else shapes.encode_keys(entry.keys)
    return (_encode(entry.tx), routing, tables, entry.seq)


async def _write(conn: Any, tenant: str, updates: list[tuple[Any, ...]], removals: list[int]) -> None:
    async with conn.cursor() as cur:
        if updates:
            await cur.executemany(
                f"UPDATE {SCHEMA}.change_log SET payload = %s, routing = %s, tables = %s "
                f"WHERE tenant = %s AND seq = %s",
                [(*row[:3], tenant, row[3]) for row in updates],
            )
        if removals:
            await cur.execute(
                f"DELETE FROM {SCHEMA}.change_log WHERE tenant = %s AND seq = ANY(%s)", (tenant, removals)
            )


async def tenants(store: Any) -> list[str]:
    async with store.pool.connection() as conn:
        cur = await conn.execute(f"SELECT DISTINCT tenant FROM {SCHEMA}.change_log ORDER BY tenant")
        return [row[0] for row in await cur.fetchall()]


async def compact(
    store: Any, *, tenant: str | None = None, retention_s: float = DEFAULT_RETENTION_S
) -> list[CompactionResult]:
    """Compact one tenant's log, or every tenant's (and then drop the staged
    parts of large transactions left unfinished longer than the retention)."""
    names = [tenant] if tenant is not None else await tenants(store)
    results = []
    for name in names:
        found = await compact_tenant(store, name, retention_s=retention_s)
        if found is not None:
            results.append(found)
    if tenant is None:
        await staging.forget_stale(store, older_than_s=retention_s)
    return results


async def run_periodically(store: Any, *, interval_s: float, retention_s: float = DEFAULT_RETENTION_S) -> None:
    """The daemon's periodic compaction: every ``interval_s`` (with jitter, so
    instances started together spread out), every tenant. Failures are logged
    and retried at the next round."""
    while not background.stopping():
        await asyncio.sleep(interval_s * random.uniform(0.8, 1.2))
        try:
            await compact(store, retention_s=retention_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic compaction failed; retrying at the next round")
