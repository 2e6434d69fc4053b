"""What the sync client remembers in the replica, and the writes that move it.

Positions and the last error are ``sync.*`` keys in ``_ss_meta``; rejected
pushes and conflict records are the local-only tables of replica migration
0003; the shapes synced, and where a cut-off snapshot continues, are
``_ss_shapes`` (migration 0008); whether a rejected push was reverted, and
the parts of changes an older server could not take, are migration 0011's.
Every write that moves a position happens in the same SQLite transaction as
the data it stands for, so a crash never leaves a cursor ahead of the rows it
claims (nothing skipped) or an acked sequence ahead of the server (nothing
left unsent).
"""

from __future__ import annotations

import itertools
import logging
import operator
from typing import Any, Iterable

import msgspec

from syncstore import schema
from syncstore.core import merge
from syncstore.core import protocol as p
from syncstore.core import shapes as sh
from syncstore.core import versions
from syncstore.core.client_session import SnapshotChunk, Subscription, group_transactions
from syncstore.core.hlc import ServerTime
from syncstore.errors import ValidationError
from syncstore.replica import clocks, rekey
from syncstore.replica.store import SERVER_TIME_KEY, Change, LoggedChange, RemoteChange, Replica, RevertRow

# What a snapshot cell may hold, by column type (values arrive canonical from
# the server's own readers; a row that does not fit goes through apply_remote,
# which checks it in full).
_FAST_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "timestamp": (str,), "json": (str,), "integer": (int,), "boolean": (int,),
    "real": (float, int), "blob": (bytes,), "vector": (bytes,),
}  # fmt: skip


class _Bulk:
    """A table's statement and checks for inserting snapshot rows it does not hold."""

    def __init__(self, tbl: schema.Table):
        self.table = tbl.name
        self.names = tbl.column_names[1:]
        self.columns = tbl.column_names
        self.cells = (*self.names, merge.DELETED)
        self.insert = (
            f"insert into {tbl.name} ({', '.join(tbl.column_names)}, _hlc, _site, _clocks) "
            f"values ({', '.join('?' * (len(tbl.column_names) + 3))})"
        )
        self.types = [(c.name, _FAST_TYPES[c.type], c.required) for c in tbl.columns[1:]]
        self.existing = f"select id from {tbl.name} where id between ? and ?"
        self._signatures: dict[tuple[type, ...], bool] = {}

    def row(self, row_id: str, cells: dict[str, Any]) -> tuple[tuple[Any, ...], int] | None:
        """The insert's parameters and the row's newest clock, or None when the
        row needs the full path."""
        if len(cells) != len(self.cells):
            return None
        try:
            deleted = cells[merge.DELETED]
            values = [cells[name][0] for name in self.names]
        except KeyError:
            return None
        if deleted[0] != 0:
            return None
        signature = tuple(map(type, values))  # most rows share a few: each is checked once
        ok = self._signatures.get(signature)
        if ok is None:
            ok = self._signatures[signature] = all(
                (kind is type(None) and not required) or kind in types
                for kind, (_, types, required) in zip(signature, self.types)
            )
        if not ok:
            return None
        clock_set = set(map(_CLOCK, cells.values()))
        if len(clock_set) == 1:
            (base,) = clock_set
            return (row_id, *values, base[0], base[1], None), base[0]
        newest = max(clock[0] for clock in clock_set)
        return (row_id, *values, *clocks.compress({name: _CLOCK(cell) for name, cell in cells.items()})), newest


    def columnar(self, chunk: p.Columns) -> list[tuple[Any, ...]] | None:
        """The insert's parameters for every row of a columnar chunk, or None
        when the chunk is not what this table takes (it then goes row by row,
        through the full checks). Column by column: one set of the value types
        per column, not one check per cell."""
        n = len(chunk.ids)
        if (
            tuple(chunk.columns) != self.names
            or len(chunk.values) != len(self.names)
            or any(len(column) != n for column in chunk.values)
            or len(chunk.hlcs) != n
            or len(chunk.site_index) != n
            or not set(map(type, chunk.ids)) <= {str}
            or not set(map(type, chunk.hlcs)) <= {int}
            or not set(map(type, chunk.sites)) <= {bytes}
            or not set(map(type, chunk.site_index)) <= {int}
        ):
            return None
        for column, (_, types, required) in zip(chunk.values, self.types):
            kinds = set(map(type, column))
            if not required:
                kinds.discard(type(None))
            if not kinds <= set(types):
                return None
        sites = chunk.sites
        if chunk.site_index and not 0 <= min(chunk.site_index) <= max(chunk.site_index) < len(sites):
            return None
        row_sites = [sites[i] for i in chunk.site_index]
        return list(zip(chunk.ids, *chunk.values, chunk.hlcs, row_sites, itertools.repeat(None, n)))


_CLOCK = operator.itemgetter(1, 2)
_BULK = {name: _Bulk(tbl) for name, tbl in schema.TABLES.items()}

ACKED = "sync.acked_seq"
CURSOR = "sync.cursor"
RECONCILED = "sync.reconciled_seq"  # local changes up to here had their rows fetched back (filtered shapes)
TENANT = "sync.tenant"
LAST_ERROR = "sync.last_error"
LAST_ERROR_AT = "sync.last_error_at"
LAST_CONNECTED_AT = "sync.last_connected_at"
LAST_SYNCED_AT = "sync.last_synced_at"
STOPPED = "sync.stopped"  # why the last background sync stopped for good, and what to do
STOPPED_AT = "sync.stopped_at"
SERVER_TIME = SERVER_TIME_KEY  # the server's time, kept while this replica's clock runs past its cap
# This file's changes up to here were pushed under an earlier site id (it took
# a new one, being a copy of another file): the current id's pushes start after.
SITE_BASE = "sync.site_base"
REKEYED = "sync.rekeyed"  # why and when this file last took a new site id
# The schema version this replica's rows are complete for: the lower of its
# own and the servers' it followed since (a server of an older version sends
# no newer columns). Below this library's and the server's, the shapes of
# tables that changed since are taken again by snapshot.
SCHEMA = "sync.schema"
SERVER_SCHEMA = "sync.server_schema"  # the last server's schema version

_encode = msgspec.msgpack.encode
_decode_tx = msgspec.msgpack.Decoder(p.LocalTx).decode
log = logging.getLogger("syncstore.sync")


def synced_tables() -> list[str]:
    return list(schema.TABLES)


def whole_tables() -> list[p.Shape]:
    return [p.Shape(table=name) for name in schema.TABLES]


def _filter_sql(shape: sh.ShapeFilter) -> tuple[list[str], list[Any]]:
    """SQLite conditions (and parameters) selecting a shape's local rows."""
    tbl = schema.table(shape.table)
    clauses, params = [], []
    for column, allowed in shape.where:
        name = tbl.column(column).name
        values = [v for v in allowed if v is not None]
        part = f"{name} in ({', '.join('?' * len(values))})" if values else "0"
        if None in allowed:
            part = f"({part} or {name} is null)"
        clauses.append(part)
        params.extend(values)
    return clauses, params


def _as_remote(rc: p.RowChange) -> RemoteChange:
    return RemoteChange(rc.table, rc.id, {name: merge.Cell(*cell) for name, cell in rc.cells.items()})


def _remote(rows: Iterable[p.RowChange]) -> list[RemoteChange]:
    """Server rows as the replica's merge takes them (rows with no cells left out)."""
    return [
        RemoteChange(rc.table, rc.id, {name: merge.Cell(*cell) for name, cell in rc.cells.items()})
        for rc in rows
        if rc.cells
    ]


LIVE_SUBSCRIPTION = "live"  # the id of the subscription of every shape whose rows are here


class SyncState:
    """The sync client's state in one replica (opened by the sync driver)."""

    def __init__(self, replica: Replica):
        self.replica = replica
        self._conn = replica.connection

    # --- positions ----------------------------------------------------------

    @property
    def acked_seq(self) -> int:
        return int(self.replica.meta_get(ACKED, 0))

    @property
    def reconciled_seq(self) -> int:
        """Local changes up to this sequence had the rows whose filtered
        columns they wrote fetched back and merged (a replica that never
        followed a filtered shape owes nothing for what is acked)."""
        found = self.replica.meta_get(RECONCILED)
        return self.acked_seq if found is None else int(found)

    def start_reconciling(self) -> None:
        """Before following filtered shapes: what is acked by now owes nothing
        (the reconciled sequence starts there, once)."""
        if self.replica.meta_get(RECONCILED) is None:
            with self.replica.transaction():
                self._set(RECONCILED, self.acked_seq)

    def reconciled(self, upto_seq: int) -> None:
        with self.replica.transaction():
            if upto_seq > self.reconciled_seq:
                self._set(RECONCILED, upto_seq)

    @property
    def cursor(self) -> int:
        return int(self.replica.meta_get(CURSOR, 0))

    @property
    def tenant(self) -> str | None:
        return self.replica.meta_get(TENANT)

    def pending_changes(self) -> int:
        """Local changes the server has not acknowledged (the offline queue)."""
        return self._conn.execute("select count(*) from _ss_changes where seq > ?", (self.acked_seq,)).fetchone()[0]

    def pending_resolutions(self) -> int:
        """Conflicts resolved here that the server has not been told of yet."""
        return self._conn.execute(
            "select count(*) from _ss_conflicts where resolved_at is not null and reported = 0"
        ).fetchone()[0]

    @property
    def server_time(self) -> ServerTime | None:
        """The server's time as kept while this replica's clock is past its cap."""
        found = self.replica.meta_get(SERVER_TIME)
        return None if found is None else ServerTime.decode(found)

    def keep_server_time(self, server_time: ServerTime | None) -> None:
        """Keep (or with None, forget) the server's time: while it is kept,
        every connection to the file refuses local writes past its cap."""
        with self.replica.transaction():
            if server_time is None:
                self._conn.execute("delete from _ss_meta where key = ?", (SERVER_TIME,))
            else:
                self._set(SERVER_TIME, server_time.encode())

    @property
    def stopped(self) -> str | None:
        return self.replica.meta_get(STOPPED)

    def stop(self, message: str | None) -> None:
        """Record why the background sync stopped for good (None: it runs again)."""
        with self.replica.transaction():
            if message is None:
                self._conn.execute("delete from _ss_meta where key in (?, ?)", (STOPPED, STOPPED_AT))
            else:
                self._set(STOPPED, message)
                self._set(STOPPED_AT, schema.now_iso())

    def _set(self, key: str, value: Any) -> None:
        self._conn.execute("insert or replace into _ss_meta (key, value) values (?, ?)", (key, value))

    # --- transitions --------------------------------------------------------

    @property
    def site_base(self) -> int:
        """The changes up to here went out under an earlier site id of this file."""
        return int(self.replica.meta_get(SITE_BASE, 0))

    def welcomed(self, *, tenant: str, acked_seq: int) -> None:
        """The server's record of our merged changes replaces ours (it is the
        truth; the changes pushed under an earlier site id stay merged)."""
        with self.replica.transaction():
            self._set(TENANT, tenant)
            self._set(ACKED, max(acked_seq, self.site_base))
            self._set(LAST_CONNECTED_AT, schema.now_iso())
            self._conn.execute("delete from _ss_meta where key in (?, ?)", (STOPPED, STOPPED_AT))

    def take_new_site(self, *, merged_upto: int, reason: str) -> rekey.NewSite:
        """This file is a copy of another that synced (same site id, another
        history): take a new site id, and push every change after
        ``merged_upto`` (the last the server acknowledged of this file's own)
        again under it. One transaction."""
        with self.replica.transaction():
            found = rekey.take_new_site(self.replica, resend_after=merged_upto)
            self._set(SITE_BASE, merged_upto)
            self._set(ACKED, merged_upto)
            if self.replica.meta_get(RECONCILED) is not None and self.reconciled_seq > merged_upto:
                self._set(RECONCILED, merged_upto)
            self._set(REKEYED, f"{schema.now_iso()}: {reason}")
        return found

    def acked(self, upto_seq: int, rejected: Iterable[p.Rejection]) -> None:
        """Move the acked sequence and keep each refused transaction, in one transaction."""
        now = schema.now_iso()
        with self.replica.transaction():
            for rejection in rejected:
                self._conn.execute(
                    "insert or replace into _ss_sync_rejected (tx, code, message, changes, rejected_at) "
                    "values (?, ?, ?, ?, ?)",
                    (rejection.tx, rejection.code, rejection.message, self._pushed_tx(rejection.tx), now),
                )
            if upto_seq > self.acked_seq:
                self._set(ACKED, upto_seq)

    def _pushed_tx(self, tx: int) -> bytes:
        """The refused transaction as it was pushed, read back from the change log."""
        entries = [
            LoggedChange(seq, txn, tbl, pk, hlc, clocks.decode_values(cols), clocks.decode_seen(seen))
            for seq, txn, tbl, pk, hlc, cols, seen in self._conn.execute(
                "select seq, tx, tbl, pk, hlc, cols, seen from _ss_changes where tx = ? order by seq", (tx,)
            )
        ]
        txs = group_transactions(entries)
        return _encode(txs[0] if txs else p.LocalTx(tx=tx, changes=[]))

    # --- rejected pushes: back to the server's state ----------------------------

    def unreverted(self) -> list[p.LocalTx]:
        """The refused transactions whose rows were not yet returned to the
        server's state, as they were pushed, oldest first."""
        return [
            _decode_tx(blob)
            for (blob,) in self._conn.execute(
                "select changes from _ss_sync_rejected where reverted_at is null order by tx"
            )
        ]

    def revert(self, rows: Iterable[RevertRow], *, done: Iterable[int] = ()) -> list[Change]:
        """Return these rows to the server's state (see ``Replica.revert``) and
        mark the refused transactions ``done`` reverted, in one transaction."""
        now = schema.now_iso()
        with self.replica.transaction():
            applied = self.replica.revert(rows)
            self._conn.executemany(
                "update _ss_sync_rejected set reverted_at = ? where tx = ?", [(now, tx) for tx in done]
            )
        return applied

    # --- schema versions: what an older server cannot take -----------------------

    def hold(self, changes: Iterable[p.LocalChange]) -> None:
        """Keep parts of changes an older server could not take, to write them
        again for a server that knows them."""
        now = schema.now_iso()
        with self.replica.transaction():
            self._conn.executemany(
                "insert or ignore into _ss_held (seq, tbl, pk, hlc, cols, seen, since, held_at) "
                "values (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.seq, c.table, c.id, c.hlc, clocks.encode_values(c.values), clocks.encode_seen(c.seen),
                        versions.needed_version(c), now,
                    )  # fmt: skip
                    for c in changes
                ],
            )

    def held(self) -> tuple[int, int]:
        """How many held changes there are, and the schema version the newest needs (0: none)."""
        count, since = self._conn.execute("select count(*), coalesce(max(since), 0) from _ss_held").fetchone()
        return count, since

    def release_held(self, server_schema: int) -> int:
        """A server of ``server_schema`` knows what was held for it: write it
        again as new local changes (at new clocks, so they sync like any
        edit), in one transaction; returns how many rows were written.

        A held cell that a later write replaced here is not written again
        (the later write stands). A row of a table the server did not know at
        all is written whole, as an insert."""
        site = self.replica.site_id
        with self.replica.transaction():
            found = list(
                self._conn.execute(
                    "select seq, tbl, pk, hlc, cols from _ss_held where since <= ? order by seq", (server_schema,)
                )
            )
            if not found:
                return 0
            rows: dict[tuple[str, str], tuple[set[str], set[int], bool]] = {}
            for _, table, row_id, hlc, cols in found:
                names, stamps, whole = rows.setdefault((table, row_id), (set(), set(), False))
                values = clocks.decode_values(cols)
                names.update(values)
                stamps.add(hlc)
                if merge.DELETED in values:  # the whole change was held: the table was unknown
                    rows[(table, row_id)] = (names, stamps, True)
            written = 0
            for (table, row_id), (names, stamps, whole) in rows.items():
                if table not in schema.TABLES:
                    continue
                if whole:
                    written += self.replica.rewrite(table, row_id)
                    continue
                cells = self.replica.cells(table, row_id) or {}
                held_at = {(stamp, site) for stamp in stamps}
                still = [n for n in names if n in cells and (cells[n].hlc, cells[n].site) in held_at]
                if still:
                    written += self.replica.rewrite(table, row_id, still)
            self._conn.execute("delete from _ss_held where since <= ?", (server_schema,))
        return written

    def schema_met(self, server_schema: int) -> bool:
        """Note the schema version of the server just met. True when this
        replica's rows were complete for an older version than this library
        and the server now share: the shapes of tables that changed since are
        marked for a snapshot (subscribe again to take them)."""
        shared = min(schema.SCHEMA_VERSION, server_schema)
        with self.replica.transaction():
            self._set(SERVER_SCHEMA, server_schema)
            recorded = self.replica.meta_get(SCHEMA)
            if recorded is None:
                # Before versions were recorded a replica synced at version 1;
                # one that never synced has nothing to take again.
                synced = self._conn.execute("select 1 from _ss_shapes where state = 'live' limit 1").fetchone()
                recorded = 1 if synced or self.cursor else shared
            recorded = int(recorded)
            self._set(SCHEMA, shared)
            if shared <= recorded:
                return False
            tables = [name for name in schema.added_after(recorded) if name in schema.tables_at(shared)]
            marked = 0
            for name in tables:
                self._conn.execute(
                    "update _ss_shapes set state = 'snapshot', position = 0, resume = '' "
                    "where tbl = ? and state = 'live'",
                    (name,),
                )
                marked += self._conn.changes()
            return marked > 0

    def apply(self, tx: p.ServerTx) -> list[Change]:
        """Apply one server transaction, its conflict records and the cursor, atomically."""
        remote = _remote(tx.changes)
        with self.replica.transaction():
            applied = self.replica.apply_remote(remote) if remote else []
            if tx.conflicts:
                self._store_conflicts(tx.conflicts, tx.seq)
            if tx.seq > self.cursor:
                self._set(CURSOR, tx.seq)
        return applied

    def _store_conflicts(self, records: Iterable[p.ConflictRecord], seq: int) -> None:
        """Keep conflict records (in the caller's transaction); one already
        here keeps its local state (a resolution made here stays)."""
        now = schema.now_iso()
        self._conn.executemany(
            "insert or ignore into _ss_conflicts (id, tbl, row_id, col, winner_value, winner_hlc, "
            "winner_site, loser_value, loser_hlc, loser_site, incoming_won, created_at, server_seq, "
            "received_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    c.id, c.table, c.row_id, c.column, c.winner_value, c.winner_hlc, c.winner_site,
                    c.loser_value, c.loser_hlc, c.loser_site, int(c.incoming_won), c.created_at or now, seq, now,
                )  # fmt: skip
                for c in records
            ],
        )

    def up_to_date(self, cursor: int) -> None:
        """Caught up: keep the cursor and clear the last error (the connection works)."""
        with self.replica.transaction():
            if cursor > self.cursor:
                self._set(CURSOR, cursor)
            self._set(LAST_SYNCED_AT, schema.now_iso())
            self._conn.execute("delete from _ss_meta where key in (?, ?)", (LAST_ERROR, LAST_ERROR_AT))

    def reported(self, conflict_ids: Iterable[str]) -> None:
        """The server has read these resolutions."""
        with self.replica.transaction():
            self._conn.executemany("update _ss_conflicts set reported = 1 where id = ?", [(i,) for i in conflict_ids])

    def failed(self, message: str) -> None:
        with self.replica.transaction():
            self._set(LAST_ERROR, message)
            self._set(LAST_ERROR_AT, schema.now_iso())

    def unreported_resolutions(self) -> list[str]:
        return [
            row[0]
            for row in self._conn.execute(
                "select id from _ss_conflicts where resolved_at is not null and reported = 0 order by resolved_at"
            )
        ]

    # --- shapes and snapshots -------------------------------------------------

    def subscriptions(self, shapes: Iterable[p.Shape]) -> list[Subscription]:
        """What to subscribe to for ``shapes``, recording new ones: shapes whose
        rows are here follow the log from the cursor; the others (new shapes,
        or a snapshot cut off midway) get a snapshot first, resumed where it stopped."""
        checked = {}
        for shape in shapes:
            found = sh.check_shape(shape)
            checked[sh.shape_key(found)] = found
        now = schema.now_iso()
        with self.replica.transaction():
            known = {
                key: (state, position, resume)
                for key, state, position, resume in self._conn.execute(
                    "select key, state, position, resume from _ss_shapes"
                )
            }
            # A replica that synced before shapes were recorded followed every
            # table whole from its cursor: those shapes are live already.
            legacy = not known and self.cursor > 0
            for key in set(known) - set(checked):
                self._conn.execute("delete from _ss_shapes where key = ?", (key,))  # dropped: re-added means a snapshot
            for key, found in checked.items():
                if key not in known:
                    state = "live" if legacy and found.whole else "snapshot"
                    self._conn.execute(
                        "insert into _ss_shapes (key, tbl, state, added_at) values (?, ?, ?, ?)",
                        (key, found.table, state, now),
                    )
                    known[key] = (state, 0, "")
        live = [checked[key].to_shape() for key in checked if known[key][0] == "live"]
        out = [Subscription(LIVE_SUBSCRIPTION, live)] if live else []
        for key, found in checked.items():
            state, position, resume = known[key]
            if state == "snapshot":
                out.append(
                    Subscription(key, [found.to_shape()], snapshot=True, resume=resume, cursor=position if resume else 0)
                )
        return out

    def apply_snapshot(self, chunk: SnapshotChunk) -> list[Change]:
        """Apply one snapshot chunk with the merge rule, and remember where the
        snapshot stands (its resume key and position; on the last chunk the
        shape is live, and the cursor is the one the session decided),
        in one transaction.

        Rows already here (or buried here) merge through ``apply_remote``. A
        row not here at all merges to exactly the incoming cells, so those are
        inserted in one statement per chunk, the same row ``apply_remote``
        would write; the one holding the chunk's newest clock still goes
        through it, which moves the replica's clock past every cell."""
        with self.replica.transaction():
            applied, fresh = [], []
            remote = [rc for rc in chunk.rows if rc.cells]
            if chunk.columns is not None and chunk.columns.ids:
                remote.extend(self._insert_columns(chunk.columns, fresh))
            by_table: dict[str, list[p.RowChange]] = {}
            for rc in remote:
                by_table.setdefault(rc.table, []).append(rc)
            slow: list[p.RowChange] = []
            for table, rows in by_table.items():
                bulk = _BULK.get(table)
                if bulk is None:
                    slow.extend(rows)
                    continue
                present = self._present(bulk, [rc.id for rc in rows])
                params, newest, newest_at = [], -1, -1
                for rc in rows:
                    found = None if rc.id in present else bulk.row(rc.id, rc.cells)
                    if found is None:
                        slow.append(rc)
                        continue
                    params.append(found[0])
                    fresh.append(Change(table, rc.id, "insert", bulk.columns, "remote"))
                    if found[1] > newest:
                        newest, newest_at = found[1], len(params) - 1
                if params:
                    # The row with the newest clock goes through apply_remote,
                    # which moves the replica's clock past it (and so past all).
                    newest_id = params[newest_at][0]
                    slow.append(next(rc for rc in rows if rc.id == newest_id))
                    del params[newest_at]
                    del fresh[len(fresh) - len(params) - 1 + newest_at]
                if params:
                    self._conn.executemany(bulk.insert, params)
            if slow:
                applied = self._apply_or_skip(slow)
            if chunk.conflicts:
                # The chunk does not say at which log position each record was
                # made: the snapshot's position stands for it.
                self._store_conflicts(chunk.conflicts, chunk.position)
            if chunk.last:
                # The session's cursor, which may move back: shapes' snapshots
                # are consistent with different positions, and a connection
                # cut before the log caught up must resume from the oldest.
                self._set(CURSOR, chunk.cursor)
                self._conn.execute(
                    "update _ss_shapes set state = 'live', position = ?, resume = '' where key = ?",
                    (chunk.position, chunk.id),
                )
            else:
                self._conn.execute(
                    "update _ss_shapes set position = ?, resume = ? where key = ?",
                    (chunk.position, chunk.resume, chunk.id),
                )
        return fresh + applied

    def _apply_or_skip(self, rows: list[p.RowChange]) -> list[Change]:
        """Merge snapshot rows (in the caller's transaction). A row this replica
        cannot take (a value its schema refuses, a column it does not know) is
        kept in ``_ss_sync_skipped`` and logged, not applied: failing the chunk
        would fail every later sync too, for good. Checking happens before
        anything is written, so the good rows are merged as one batch either way."""
        try:
            return self.replica.apply_remote(_as_remote(rc) for rc in rows)
        except (ValidationError, TypeError, ValueError):
            pass  # find the rows at fault
        applied: list[Change] = []
        now = schema.now_iso()
        for rc in rows:
            try:
                applied += self.replica.apply_remote([_as_remote(rc)])
            except (ValidationError, TypeError, ValueError) as exc:
                log.warning("the server's %s row %s cannot be stored here, skipped: %s", rc.table, rc.id, exc)
                self._conn.execute(
                    "insert or replace into _ss_sync_skipped (tbl, pk, problem, cells, skipped_at) "
                    "values (?, ?, ?, ?, ?)",
                    (str(rc.table), str(rc.id), str(exc), _encode(rc.cells), now),
                )
        return applied

    def skipped_rows(self) -> int:
        """Server rows a snapshot sent that this replica could not take (see ``_ss_sync_skipped``)."""
        return self._conn.execute("select count(*) from _ss_sync_skipped").fetchone()[0]

    def _insert_columns(self, chunk: p.Columns, fresh: list[Change]) -> list[p.RowChange]:
        """Insert the rows of a columnar chunk this replica does not hold (in
        the caller's transaction) and return the others as RowChanges to merge
        through ``apply_remote``: the rows it holds, the one with the newest
        clock (which moves the replica's clock past every cell), or all of
        them when the chunk is not what the fast path takes."""
        bulk = _BULK.get(chunk.table)
        params = bulk.columnar(chunk) if bulk is not None else None
        if bulk is None or params is None:
            return chunk.row_changes()
        present = self._present(bulk, chunk.ids)
        hlcs = chunk.hlcs
        slow = [k for k, row_id in enumerate(chunk.ids) if row_id in present] if present else []
        absent = [k for k in range(len(params)) if chunk.ids[k] not in present] if slow else range(len(params))
        if absent:
            slow.append(max(absent, key=hlcs.__getitem__))
        skip = set(slow)
        params = [row for k, row in enumerate(params) if k not in skip]
        if params:
            self._conn.executemany(bulk.insert, params)
            n = len(params)
            fresh.extend(
                itertools.starmap(
                    Change,
                    zip(
                        itertools.repeat(bulk.table, n),
                        map(operator.itemgetter(0), params),
                        itertools.repeat("insert", n),
                        itertools.repeat(bulk.columns, n),
                        itertools.repeat("remote", n),
                    ),
                )
            )
        if not slow:
            return []
        names = (*chunk.columns, merge.DELETED)
        out = []
        for k in slow:
            at = (chunk.hlcs[k], chunk.sites[chunk.site_index[k]])
            row_values = [column[k] for column in chunk.values]
            row_values.append(0)
            out.append(p.RowChange(chunk.table, chunk.ids[k], {n: (v, *at) for n, v in zip(names, row_values)}))
        return out

    def _present(self, bulk: _Bulk, ids: list[str]) -> set[str]:
        """Which of ``ids`` this replica holds, live or as a tombstone (one
        range scan each: a chunk's ids are a range, and a new replica holds
        nothing in it)."""
        if not ids:
            return set()
        low, high = min(ids), max(ids)
        found = {row[0] for row in self._conn.execute(bulk.existing, (low, high))}
        found.update(
            row[0]
            for row in self._conn.execute(
                "select pk from _ss_tombstones where tbl = ? and pk between ? and ?", (bulk.table, low, high)
            )
        )
        return found & set(ids)

    def apply_rows(self, rows: Iterable[p.RowChange], *, reconciled_seq: int = 0) -> list[Change]:
        """Merge rows fetched from the server (their current state), and move
        the reconciled sequence to ``reconciled_seq`` (when every fetch for
        changes up to it is answered), in one transaction. The merge rule
        makes this safe at any time; the cursor stays where it is."""
        remote = _remote(rows)
        with self.replica.transaction():
            applied = self.replica.apply_remote(remote) if remote else []
            if reconciled_seq > self.reconciled_seq:
                self._set(RECONCILED, reconciled_seq)
        return applied

    def ids_in_shape(self, shape: sh.ShapeFilter, after: str, upto: str | None) -> list[str]:
        """The ids of the live local rows matching ``shape`` with ``after`` <
        id (<= ``upto`` unless None), by id."""
        tbl = schema.table(shape.table)
        clauses, params = _filter_sql(shape)
        clauses.append("id > ?")
        params.append(after)
        if upto is not None:
            clauses.append("id <= ?")
            params.append(upto)
        sql = f"select id from {tbl.name} where {' and '.join(clauses)} order by id"
        return [row[0] for row in self._conn.execute(sql, params)]

    def snapshot_progress(self) -> dict[str, tuple[str, int, str]]:
        """Per shape key: (state, position, resume)."""
        return {
            key: (state, position, resume)
            for key, state, position, resume in self._conn.execute("select key, state, position, resume from _ss_shapes")
        }

    def reset_for_resnapshot(self, shapes: Iterable[p.Shape]) -> bool:
        """The server no longer keeps the log from our cursor: drop the shapes'
        rows (they may hold rows deleted since, whose tombstones the server
        collected), set the cursor back to 0 and mark every shape for a
        snapshot. Only with nothing left to push (False otherwise: push first,
        so no local write is lost), in one transaction."""
        with self.replica.transaction():
            if self.pending_changes():
                return False
            for shape in shapes:
                found = sh.check_shape(shape)
                tbl = schema.table(found.table)
                clauses, params = _filter_sql(found)
                where = f" where {' and '.join(clauses)}" if clauses else ""
                self._conn.execute(f"delete from {tbl.name}{where}", params)
                if found.whole:
                    self._conn.execute("delete from _ss_tombstones where tbl = ?", (tbl.name,))
            self._conn.execute("update _ss_shapes set state = 'snapshot', position = 0, resume = ''")
            self._set(CURSOR, 0)
        return True
