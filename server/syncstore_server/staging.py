"""Large client transactions, pushed in parts: staged, then merged whole.

A local transaction too large for one push (more changes than a push may
carry, or more bytes than a frame) comes as parts, in sequence order, each
alone in its Push (``LocalTx.end_seq``: the sequence of its last change). This
module keeps them in PostgreSQL until the last one comes (server migration
0006), so a transaction of any size costs the server no more memory than one
part, and a connection cut between parts loses nothing:

- **Staging a part** (one database transaction, the site's ack row locked, as
  any merge): its changes are checked like any push, then replace whatever
  is staged at their sequence numbers (a part sent again is not doubled), and
  the site's progress row says how far it is staged. The Ack says so
  (``Ack.staged_seq``) without moving ``upto_seq``: nothing is merged yet. A
  new connection is told where to go on (``Welcome.staged_seq``).
- **The last part** stages its changes and merges every staged change of the
  transaction in the same database transaction: in windows of
  :data:`WINDOW` changes read through a server-side cursor, each window's rows
  locked, planned with the pure rule and written as a normal push's are. The
  windows go in (table, id) order, the order every push locks rows in, so a
  large merge never deadlocks with the pushes around it. What each window
  logged waits in a temporary table; at the end, under the tenant's log lock,
  it becomes one log entry, or a group of entries (see
  :mod:`syncstore_server.log_entries`) that clients apply as one transaction.
  The ack row moves past the transaction and the staged rows go, all in the
  same commit: readers of PostgreSQL see the whole transaction or none of it.
- **Refusals** are per transaction: a part that fails the checks, or a
  transaction larger than ``max_staged_changes``, refuses the whole
  transaction for good (recorded, acked past, its staged rows deleted). A
  part stamped too far ahead of the server's clock is deferred like any
  transaction (``MergeResult.deferred``): not staged, not acked; the parts
  before it stay staged and the client sends it again later.
- **Leftovers**: staged rows of a transaction that was merged or of another
  transaction are deleted when the site stages again; :func:`forget_stale`
  (run by compaction) deletes those older than the retention window.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, NamedTuple

import msgspec
import psycopg

from syncstore import schema
from syncstore.core import protocol as p
from syncstore.core import shapes
from syncstore.errors import SyncError

from syncstore_server import log_entries, merge_plan
from syncstore_server.tables import SCHEMA
from syncstore_server.validate import Checked, Deferred, Refused, check_tx

log = logging.getLogger("syncstore.server.staging")

WINDOW = 2_000  # staged changes merged at a time (their rows in memory at once)
DEFAULT_MAX_STAGED_CHANGES = 1_000_000  # changes in one transaction pushed in parts

_encode = msgspec.msgpack.encode
_decode_checked = msgspec.msgpack.Decoder(Checked).decode
_decode_tx = msgspec.msgpack.Decoder(p.ServerTx).decode


class StagingLost(SyncError):
    """The staged parts do not add up to the transaction (the client skipped
    or changed some): they were deleted, and the client sends it again whole."""


class Progress(NamedTuple):
    tx: int
    end_seq: int
    staged_seq: int
    changes: int


async def staged_seq(conn: psycopg.AsyncConnection, tenant: str, site: bytes) -> int:
    """How far the site's next transaction is staged (0: nothing staged)."""
    cur = await conn.execute(
        f"SELECT staged_seq FROM {SCHEMA}.staged_transactions WHERE tenant = %s AND site = %s", (tenant, site)
    )
    found = await cur.fetchone()
    return found[0] if found else 0


async def stage_part(
    store: Any,
    conn: psycopg.AsyncConnection,
    tenant: str,
    site: bytes,
    part: p.LocalTx,
    *,
    client_schema: int | None = None,
) -> Any:
    """Stage one part; with the last, merge the whole transaction. Returns the
    store's MergeResult (``staged_seq`` set while the transaction is not whole).
    ``client_schema``: the pushing client's schema version (see ``check_tx``)."""
    # (The store imports this module.)
    from syncstore_server.store import SERVER_WRITER, Deferral, MergeResult, _fingerprint, _same_history

    now_ms = store._now_ms()
    async with conn.transaction():
        await conn.execute(SERVER_WRITER)
        acked, known = await store._lock_site(conn, tenant, site)
        _same_history([part], acked, known)  # a copied replica's part repeating what was merged
        if part.end_seq <= acked:
            # Merged before (a part sent again after the Ack was lost).
            await _forget(conn, tenant, site)
            return MergeResult(acked, [], 0, 0, [])
        fresh = [c for c in part.changes if c.seq > acked]
        progress = await _progress(conn, tenant, site)
        if progress is not None and (progress.tx, progress.end_seq) != (part.tx, part.end_seq):
            # Staged by a transaction this site will never finish (a copy of
            # its replica, a restored one): it goes.
            log.info("tenant %r: dropping the staged parts of transaction %s", tenant, progress.tx)
            await _forget(conn, tenant, site)
            progress = None
        changes = progress.changes if progress is not None else 0
        refusal = None
        if part.total > store.max_staged_changes:
            refusal = _too_large(part.total, store.max_staged_changes)
        elif fresh:
            try:
                checked = check_tx(
                    p.LocalTx(part.tx, fresh),
                    now_ms=now_ms,
                    max_drift_ms=store.max_drift_ms,
                    max_tx_changes=store.max_tx_changes,
                    client_schema=client_schema,
                )
            except Deferred as later:
                # Stamped too far ahead of our clock: not now, not for good.
                deferred = Deferral(part.tx, fresh[0].seq, later.code, later.message, later.retry_after_ms)
                staged = progress.staged_seq if progress is not None else 0
                return MergeResult(acked, [], 0, 0, [], deferred, staged_seq=staged)
            except Refused as found:
                refusal = found
            else:
                changes += len(checked) - await _replace(conn, tenant, site, checked)
                if changes > store.max_staged_changes:
                    refusal = _too_large(changes, store.max_staged_changes)
        if refusal is not None:
            await _forget(conn, tenant, site)
            refused = p.LocalTx(part.tx, fresh or list(part.changes), part.end_seq, part.total)
            rejected = await store._record_refusals(conn, tenant, site, [(refused, refusal)])
            # The fingerprint of the change at end_seq, if this part holds it.
            last = part.changes[-1]
            fingerprint = _fingerprint(last) if last.seq == part.end_seq else b""
            await store._raise_ack(conn, tenant, site, part.end_seq, fingerprint)
            return MergeResult(part.end_seq, rejected, 0, 0, [])
        upto = max(progress.staged_seq if progress is not None else acked, fresh[-1].seq if fresh else acked)
        await _record_progress(conn, tenant, site, part, upto, changes)
        if not fresh or fresh[-1].seq < part.end_seq:
            return MergeResult(acked, [], 0, 0, [], staged_seq=upto)
        if changes == part.total:
            return await _merge_staged(store, conn, tenant, site, part.tx, part.end_seq, _fingerprint(fresh[-1]))
        await _forget(conn, tenant, site)
    raise StagingLost(
        f"transaction {part.tx} of tenant {tenant!r} came with {changes} changes staged, "
        f"not the {part.total} it holds; its parts were dropped, to be sent again"
    )


def _too_large(count: int, limit: int) -> Refused:
    return Refused("tx_too_large", f"a transaction carries at most {limit} changes, got {count}")


async def _progress(conn: psycopg.AsyncConnection, tenant: str, site: bytes) -> Progress | None:
    cur = await conn.execute(
        f"SELECT tx, end_seq, staged_seq, changes FROM {SCHEMA}.staged_transactions WHERE tenant = %s AND site = %s",
        (tenant, site),
    )
    found = await cur.fetchone()
    return None if found is None else Progress(*found)


async def _record_progress(
    conn: psycopg.AsyncConnection, tenant: str, site: bytes, part: p.LocalTx, upto: int, changes: int
) -> None:
    await conn.execute(
        f"INSERT INTO {SCHEMA}.staged_transactions (tenant, site, tx, end_seq, total, staged_seq, changes) "
        f"VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, site) DO UPDATE SET "
        f"staged_seq = excluded.staged_seq, changes = excluded.changes, total = excluded.total, updated_at = now()",
        (tenant, site, part.tx, part.end_seq, part.total, upto, changes),
    )


async def _replace(conn: psycopg.AsyncConnection, tenant: str, site: bytes, checked: list[Checked]) -> int:
    """Stage these changes in place of what is staged at their sequences;
    returns how many were there (a part sent again)."""
    async with conn.cursor() as cur:
        await cur.execute(
            f"DELETE FROM {SCHEMA}.staged_changes WHERE tenant = %s AND site = %s AND seq BETWEEN %s AND %s",
            (tenant, site, checked[0].seq, checked[-1].seq),
        )
        replaced = cur.rowcount
        async with cur.copy(
            f"COPY {SCHEMA}.staged_changes (tenant, site, seq, tbl, row_id, change) FROM STDIN"
        ) as copy:
            for change in checked:
                await copy.write_row((tenant, site, change.seq, change.table, change.id, _encode(change)))
    return replaced


async def _forget(conn: psycopg.AsyncConnection, tenant: str, site: bytes) -> None:
    """Delete what the site has staged (in the caller's transaction)."""
    await conn.execute(f"DELETE FROM {SCHEMA}.staged_changes WHERE tenant = %s AND site = %s", (tenant, site))
    await conn.execute(f"DELETE FROM {SCHEMA}.staged_transactions WHERE tenant = %s AND site = %s", (tenant, site))


async def _merge_staged(
    store: Any, conn: psycopg.AsyncConnection, tenant: str, site: bytes, tx: int, end_seq: int, fingerprint: bytes
) -> Any:
    """Merge every staged change of the site as one transaction (in the caller's database transaction)."""
    from syncstore_server.store import MergeResult

    created_at = schema.now_iso()
    await conn.execute(
        "CREATE TEMP TABLE _ss_log_pieces (n integer PRIMARY KEY, body bytea NOT NULL, routing bytea NOT NULL, "
        "tables text[] NOT NULL, conflicts integer NOT NULL) ON COMMIT DROP"
    )
    written = pieces = 0
    async with conn.cursor(name="ss_staged_changes") as reader:
        await reader.execute(
            f"SELECT change FROM {SCHEMA}.staged_changes WHERE tenant = %s AND site = %s "
            f'ORDER BY tbl COLLATE "C", row_id, seq',
            (tenant, site),
        )
        while batch := await reader.fetchmany(WINDOW):
            checked = [_decode_checked(row[0]) for row in batch]
            del batch
            rows = await store._lock_rows(conn, tenant, [(None, checked)])
            before: dict[merge_plan.RowKey, Any] = {}
            for change in checked:
                key = (change.table, change.id)
                if key not in before:
                    row = rows.get(key)
                    before[key] = None if row is None else merge_plan.indexed_values(change.table, row.cells)
            entry = merge_plan.plan_tx(checked, rows, site=site, origin_tx=tx)
            keys = merge_plan.routing_keys(entry, rows, before)
            written += await store._write_rows(conn, tenant, rows)
            # The connection's write-staging tables empty at commit: this
            # window's rows must not be written again with the next one's.
            tables = sorted({change.table for change in checked})
            await conn.execute("; ".join(f"TRUNCATE {store.catalog.tables[name].stage}" for name in tables))
            if not entry.changes and not entry.conflicts:
                continue
            records = [merge_plan.conflict_record(c, created_at=created_at) for c in entry.conflicts]
            for piece in log_entries.pieces(entry.changes, records, keys, max_bytes=store.max_entry_bytes):
                pieces += 1
                await conn.execute(
                    "INSERT INTO _ss_log_pieces (n, body, routing, tables, conflicts) VALUES (%s, %s, %s, %s, %s)",
                    (pieces, piece.body, shapes.encode_keys(piece.keys), piece.tables, len(piece.conflicts)),
                )
    positions: list[int] = []
    conflicts = 0
    if pieces:
        positions, conflicts = await _log_pieces(store, conn, tenant, site, tx, pieces, created_at)
    await store._raise_ack(conn, tenant, site, end_seq, fingerprint)  # (of the change at end_seq)
    await _forget(conn, tenant, site)
    log.info("merged a staged transaction of tenant %r: %d rows, %d log entries", tenant, written, pieces)
    return MergeResult(end_seq, [], written, conflicts, positions)


async def _log_pieces(
    store: Any, conn: psycopg.AsyncConnection, tenant: str, site: bytes, tx: int, count: int, created_at: str
) -> tuple[list[int], int]:
    """Log the pieces waiting in the temporary table as one group, under the
    tenant's log lock (see :mod:`syncstore_server.store`), one at a time."""
    from syncstore_server.store import CHANNEL, LOG_LOCK_CLASS, write_conflicts

    await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOG_LOCK_CLASS, tenant))
    cur = await conn.execute(f"SELECT nextval('{SCHEMA}.change_log_seq') FROM generate_series(1, %s)", (count,))
    seqs = sorted(row[0] for row in await cur.fetchall())
    group_end = seqs[-1] if count > 1 else 0
    conflicts = 0
    for n, seq in enumerate(seqs, start=1):
        cur = await conn.execute("SELECT body, routing, tables, conflicts FROM _ss_log_pieces WHERE n = %s", (n,))
        found = await cur.fetchone()
        assert found is not None
        body, routing, tables, with_conflicts = found
        await conn.execute(
            f"INSERT INTO {SCHEMA}.change_log "
            f"(seq, tenant, origin_site, origin_tx, tables, payload, created_at, routing) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (seq, tenant, site, tx, tables, log_entries.with_position(body, seq, group_end), created_at, routing),
        )
        if with_conflicts:
            records = _decode_tx(body).conflicts
            conflicts += len(records)
            await write_conflicts(conn, tenant, [(seq, records)], created_at)
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, tenant))
    return seqs, conflicts


async def forget_stale(store: Any, *, older_than_s: float) -> int:
    """Delete the staged parts of transactions not added to for ``older_than_s``
    seconds (their replica never came back). Returns how many transactions went."""
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=older_than_s)
    async with store.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            f"DELETE FROM {SCHEMA}.staged_transactions WHERE updated_at < %s RETURNING tenant, site", (cutoff,)
        )
        gone = await cur.fetchall()
        for tenant, site in gone:
            await conn.execute(
                f"DELETE FROM {SCHEMA}.staged_changes WHERE tenant = %s AND site = %s", (tenant, site)
            )
    if gone:
        log.info("dropped %d staged transactions not finished within %.0f s", len(gone), older_than_s)
    return len(gone)
