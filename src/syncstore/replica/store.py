"""The replica: reads and writes with change capture, in atomic transactions.

Every write to a synced table goes through :class:`Replica`, which in the same
SQLite transaction writes the row, its per-column clocks and one entry in the
change log (``_ss_changes``). A rolled-back transaction leaves nothing behind.
Writes from other replicas arrive through :meth:`Replica.apply_remote`, which
merges them cell by cell with the rule in :mod:`syncstore.core.merge` and logs
nothing (they are not ours to push).

Several processes may open one file: each write transaction starts with
``BEGIN IMMEDIATE`` and reads the shared clock row, so stamps and sequence
numbers stay unique and increasing across processes.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple

import apsw

from syncstore import schema
from syncstore.core import merge
from syncstore.core.hlc import DEFAULT_MAX_DRIFT_MS, HybridClock
from syncstore.core.ids import new_site_id, uuid7
from syncstore.errors import (
    NotAReplicaError,
    NotFoundError,
    ReplicaError,
    ReplicaLockedError,
    ValidationError,
)
from syncstore.replica import clocks, migrations
from syncstore.replica.connection import DEFAULT_BUSY_TIMEOUT_MS, Capabilities, connect

log = logging.getLogger("syncstore.replica")

DELETED = merge.DELETED


class Change(NamedTuple):
    """What a committed transaction did to one row; handed to subscribers."""

    table: str
    id: str
    op: str  # "insert", "update" or "delete"
    columns: tuple[str, ...]
    origin: str  # "local" or "remote"


class LoggedChange(NamedTuple):
    """One entry of the local change log, as the sync client pushes it."""

    seq: int
    tx: int
    table: str
    id: str
    hlc: int
    values: dict[str, Any]
    seen: dict[str, tuple[int, bytes]] | None


class RemoteChange(NamedTuple):
    """Cells of one row written elsewhere: ``{column: Cell(value, hlc, site)}``."""

    table: str
    id: str
    cells: dict[str, merge.Cell]


Subscriber = Callable[[list[Change]], None]


class _Sql:
    """The statements for one table, built once from its schema definition."""

    def __init__(self, tbl: schema.Table):
        names = tbl.column_names
        self.columns = names
        self.insert = (
            f"insert into {tbl.name} ({', '.join(names)}, _hlc, _site, _clocks) "
            f"values ({', '.join('?' * len(names))}, ?, ?, ?)"
        )
        self.select = f"select * from {tbl.name} where id = ?"
        self.select_clock = f"select _hlc, _site, _clocks from {tbl.name} where id = ?"
        self.delete = f"delete from {tbl.name} where id = ?"


def _connection_error(path: str, exc: apsw.Error) -> ReplicaError:
    if isinstance(exc, apsw.BusyError):
        return ReplicaLockedError(f"{path}: the replica is locked by another process; try again")
    if isinstance(exc, (apsw.NotADBError, apsw.CorruptError)):
        return NotAReplicaError(f"{path}: the file is corrupt or not a SQLite database ({exc})")
    return ReplicaError(f"{path}: {exc}")


class Replica:
    """A syncstore replica file. Open with :func:`syncstore.open`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
    ):
        self.path = os.fspath(path)
        self.readonly = readonly
        self._conn, self.capabilities = connect(self.path, readonly=readonly, busy_timeout_ms=busy_timeout_ms)
        try:
            self._open_schema()
        except apsw.Error as exc:
            self._conn.close()
            raise _connection_error(self.path, exc) from None
        except BaseException:
            self._conn.close()
            raise
        self.site_id: bytes = self.meta_get("site_id")
        self.clock = HybridClock(max_drift_ms=max_drift_ms)
        self._lock = threading.RLock()
        self._depth = 0
        self._tx: int | None = None
        self._tx_used = False
        self._seq = 0
        self._notes: list[Change] = []
        self._subscribers: dict[str | None, list[Subscriber]] = {}
        self._sql = {name: _Sql(tbl) for name, tbl in schema.TABLES.items()}

    # --- opening --------------------------------------------------------------

    def _open_schema(self) -> None:
        conn = self._conn
        names = {row[0] for row in conn.execute("select name from sqlite_schema where type = 'table'")}
        if names and "_ss_migrations" not in names:
            raise NotAReplicaError(
                f"{self.path}: a SQLite database, but not a syncstore replica "
                f"(it has tables {', '.join(sorted(names)[:5])}); use a new file"
            )
        if self.readonly:
            migrations.check_not_newer(conn, self.path)
            if not names:
                raise NotAReplicaError(f"{self.path}: empty file, not a syncstore replica")
            return
        migrations.migrate(conn, self.path)
        conn.execute("insert or ignore into _ss_meta (key, value) values ('site_id', ?)", (new_site_id(),))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> apsw.Connection:
        """The underlying apsw connection, for reads the API does not cover."""
        return self._conn

    # --- transactions ---------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Replica]:
        """Atomic writes: the outermost level is a ``BEGIN IMMEDIATE`` transaction,
        inner levels are savepoints. Subscribers hear of the changes after commit."""
        with self._lock:
            outer = self._depth == 0
            marker = len(self._notes)
            try:
                if outer:
                    self._begin()
                else:
                    self._conn.execute(f"savepoint ss_{self._depth}")
            except apsw.Error as exc:
                raise _connection_error(self.path, exc) from None
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                del self._notes[marker:]
                if outer:
                    self._conn.execute("rollback")
                    self._tx = None
                else:
                    self._conn.execute(f"rollback to ss_{self._depth}")
                    self._conn.execute(f"release ss_{self._depth}")
                raise
            self._depth -= 1
            if not outer:
                self._conn.execute(f"release ss_{self._depth}")
                return
            try:
                self._commit()
            except apsw.Error as exc:
                self._conn.execute("rollback")
                self._notes.clear()
                raise _connection_error(self.path, exc) from None
            finally:
                self._tx = None
            notes, self._notes = self._notes, []
        if notes:
            self._notify(notes)

    def _begin(self) -> None:
        if self.readonly:
            raise ReplicaError(f"{self.path}: opened read-only")
        self._conn.execute("begin immediate")
        last_hlc, self._seq, last_tx = self._conn.execute(
            "select last_hlc, last_seq, last_tx from _ss_clock where id = 1"
        ).fetchone()
        self.clock.observe(last_hlc)
        self._tx = last_tx + 1
        self._tx_used = False

    def _commit(self) -> None:
        if self._tx_used:
            self._conn.execute(
                "update _ss_clock set last_hlc = ?, last_seq = ?, last_tx = ? where id = 1",
                (self.clock.last, self._seq, self._tx),
            )
        self._conn.execute("commit")

    def _require_tx(self) -> None:
        if self._depth == 0:
            raise ReplicaError("write outside a transaction")  # internal misuse

    # --- local writes ---------------------------------------------------------

    def insert(self, table: str, values: Mapping[str, Any], *, hlc: int | None = None) -> str:
        """Insert one row; fills ``id`` (UUIDv7) and timestamps when absent. Returns the id.

        ``hlc`` stamps the write with a given clock instead of a fresh tick, for
        imported data whose time is known (an older stamp loses to later edits).
        """
        return self.insert_many(table, [values], hlc=hlc)[0]

    def insert_many(self, table: str, rows: Iterable[Mapping[str, Any]], *, hlc: int | None = None) -> list[str]:
        tbl = schema.table(table)
        sql = self._sql[table]
        ids = []
        with self.transaction():
            now = schema.now_iso()
            for values in rows:
                row = dict(values)
                fresh_id = row.get("id") is None
                if fresh_id:
                    row["id"] = uuid7()
                if tbl.timestamps:
                    row.setdefault("created_at", now)
                    row.setdefault("updated_at", row["created_at"])
                elif "created_at" in tbl.column_names:
                    row.setdefault("created_at", now)
                row = schema.validate_row(tbl, row, insert=True)
                ids.append(self._insert_row(tbl, sql, row, fresh_id=fresh_id, hlc=hlc))
        return ids

    def _insert_row(
        self, tbl: schema.Table, sql: _Sql, row: dict[str, Any], *, fresh_id: bool = False, hlc: int | None = None
    ) -> str:
        conn = self._conn
        hlc = self.clock.tick() if hlc is None else hlc
        row_id = row["id"]
        if not fresh_id:  # an id we just made cannot have been deleted before
            conn.execute("delete from _ss_tombstones where tbl = ? and pk = ?", (tbl.name, row_id))
        try:
            conn.execute(sql.insert, (*[row[c] for c in sql.columns], hlc, self.site_id, None))
        except apsw.ConstraintError:
            raise ValidationError(f"a row with id {row_id!r} already exists", table=tbl.name, field="id") from None
        row[DELETED] = 0
        self._log(tbl.name, row_id, hlc, row, None)
        self._notes.append(Change(tbl.name, row_id, "insert", tuple(sql.columns), "local"))
        return row_id

    def update(self, table: str, row_id: str, values: Mapping[str, Any], *, hlc: int | None = None) -> None:
        """Write some columns of one row; ``updated_at`` is set unless given.
        ``hlc`` as for :meth:`insert`."""
        tbl = schema.table(table)
        if tbl.append_only:
            raise ValidationError("rows are append-only and cannot be updated", table=table)
        changes = dict(values)
        changes.pop("id", None)
        if tbl.timestamps:
            changes.setdefault("updated_at", schema.now_iso())
        changes = schema.validate_row(tbl, changes, insert=False)
        with self.transaction():
            self._update_row(tbl, row_id, changes, hlc=hlc)

    def _update_row(self, tbl: schema.Table, row_id: str, changes: dict[str, Any], *, hlc: int | None = None) -> None:
        found = self._conn.execute(self._sql[tbl.name].select_clock, (row_id,)).fetchone()
        if found is None:
            raise NotFoundError(tbl.name, row_id)
        base_hlc, base_site, blob = found
        base = (base_hlc, base_site)
        seen = {name: clocks.clock_of(name, base, blob) for name in changes}
        hlc = self.clock.tick() if hlc is None else hlc
        new_blob = clocks.with_writes(blob, changes, (hlc, self.site_id))
        names = list(changes)
        assignments = ", ".join(f"{name} = ?" for name in names)
        self._conn.execute(
            f"update {tbl.name} set {assignments}, _clocks = ? where id = ?",
            (*[changes[n] for n in names], new_blob, row_id),
        )
        self._log(tbl.name, row_id, hlc, changes, seen)
        self._notes.append(Change(tbl.name, row_id, "update", tuple(names), "local"))

    def delete(self, table: str, row_id: str) -> None:
        """Delete one row, leaving a tombstone that syncs like any write."""
        tbl = schema.table(table)
        if tbl.append_only:
            raise ValidationError("rows are append-only and cannot be deleted", table=table)
        with self.transaction():
            found = self._conn.execute(self._sql[table].select_clock, (row_id,)).fetchone()
            if found is None:
                raise NotFoundError(table, row_id)
            base_hlc, base_site, blob = found
            seen = clocks.column_clocks((*tbl.column_names, DELETED), (base_hlc, base_site), blob)
            hlc = self.clock.tick()
            self._conn.execute(self._sql[table].delete, (row_id,))
            self._conn.execute(
                "insert or replace into _ss_tombstones (tbl, pk, hlc, site) values (?, ?, ?, ?)",
                (table, row_id, hlc, self.site_id),
            )
            self._log(table, row_id, hlc, {DELETED: 1}, seen)
            self._notes.append(Change(table, row_id, "delete", (), "local"))

    def _log(self, table: str, row_id: str, hlc: int, values: Mapping[str, Any], seen: Mapping[str, Any] | None) -> None:
        self._seq += 1
        self._tx_used = True
        self._conn.execute(
            "insert into _ss_changes (seq, tx, tbl, pk, hlc, cols, seen) values (?, ?, ?, ?, ?, ?, ?)",
            (self._seq, self._tx, table, row_id, hlc, clocks.encode_values(values), clocks.encode_seen(seen)),
        )

    # --- remote writes --------------------------------------------------------

    def apply_remote(self, changes: Iterable[RemoteChange]) -> list[Change]:
        """Merge rows written elsewhere, in one transaction; returns what changed here.

        Values are validated against the schema first; any bad value aborts the
        whole batch with nothing written.
        """
        batch = [self._checked_remote(change) for change in changes]
        applied: list[Change] = []
        with self.transaction():
            newest = 0
            for change in batch:
                note = self._merge_remote(change)
                if note is not None:
                    applied.append(note)
                    self._notes.append(note)
                newest = max(newest, max(c.hlc for c in change.cells.values()))
            if newest:
                self.clock.observe(newest)
                self._tx_used = True  # persist the advanced clock
        return applied

    def _checked_remote(self, change: RemoteChange) -> RemoteChange:
        tbl = schema.table(change.table)
        if not isinstance(change.id, str) or not schema._UUID.match(change.id):
            raise ValidationError("id must be a UUID string", table=tbl.name, field="id")
        cells = {}
        for name, cell in change.cells.items():
            if name == DELETED:
                if cell.value not in (0, 1):
                    raise ValidationError("must be 0 or 1", table=tbl.name, field=DELETED)
                cells[name] = merge.Cell(int(cell.value), cell.hlc, cell.site)
            elif name == "id":
                continue
            else:
                value = schema.to_storage(tbl.column(name), cell.value, table_name=tbl.name)
                cells[name] = merge.Cell(value, cell.hlc, cell.site)
        if not cells:
            raise ValidationError("a change must carry at least one column", table=tbl.name)
        return RemoteChange(tbl.name, change.id, cells)

    def _merge_remote(self, change: RemoteChange) -> Change | None:
        tbl = schema.table(change.table)
        sql = self._sql[tbl.name]
        conn = self._conn
        names = (*tbl.column_names[1:], DELETED)  # every cell but the id
        row = self._fetch(sql.select, (change.id,))
        current: dict[str, merge.Cell] = {}
        if row is not None:
            known = clocks.column_clocks(names, (row["_hlc"], row["_site"]), row["_clocks"])
            for name in names:
                current[name] = merge.Cell(0 if name == DELETED else row[name], *known[name])
        else:
            tomb = conn.execute(
                "select hlc, site from _ss_tombstones where tbl = ? and pk = ?", (tbl.name, change.id)
            ).fetchone()
            if tomb is not None:
                current[DELETED] = merge.Cell(1, tomb[0], tomb[1])
        merged, changed = merge.merge_row(current, change.cells)
        if not changed:
            return None
        deleted = merged.get(DELETED) is not None and merged[DELETED].value == 1
        if deleted:
            stone = merged[DELETED]
            conn.execute(
                "insert or replace into _ss_tombstones (tbl, pk, hlc, site) values (?, ?, ?, ?)",
                (tbl.name, change.id, stone.hlc, stone.site),
            )
            if row is None:
                return None
            conn.execute(sql.delete, (change.id,))
            return Change(tbl.name, change.id, "delete", (), "remote")
        # Live: fill cells nobody has written yet with defaults at the zero clock.
        cells = {}
        for name in names:
            cell = merged.get(name)
            if cell is None:
                default = 0 if name == DELETED else tbl.column(name).default
                cell = merge.Cell(default, *clocks.ZERO)
            cells[name] = cell
        base_hlc, base_site, blob = clocks.compress({n: (c.hlc, c.site) for n, c in cells.items()})
        if row is None:
            conn.execute("delete from _ss_tombstones where tbl = ? and pk = ?", (tbl.name, change.id))
            conn.execute(sql.insert, (change.id, *[cells[c].value for c in sql.columns[1:]], base_hlc, base_site, blob))
            return Change(tbl.name, change.id, "insert", sql.columns, "remote")
        written = [n for n in changed if n != DELETED]
        assignments = "".join(f"{n} = ?, " for n in written)
        conn.execute(
            f"update {tbl.name} set {assignments}_hlc = ?, _site = ?, _clocks = ? where id = ?",
            (*[cells[n].value for n in written], base_hlc, base_site, blob, change.id),
        )
        return Change(tbl.name, change.id, "update", tuple(written), "remote")

    # --- reads ----------------------------------------------------------------

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        cursor = self._conn.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip((d[0] for d in cursor.getdescription()), row))

    def query(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        """Run a read statement; rows come back as dicts of stored values."""
        cursor = self._conn.execute(sql, params)
        try:
            names = [d[0] for d in cursor.getdescription()]
        except apsw.ExecutionCompleteError:
            return []
        return [dict(zip(names, row)) for row in cursor]

    def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        """One live row in stored form (without the hidden clock columns), or None."""
        tbl = schema.table(table)
        row = self._fetch(self._sql[table].select, (row_id,))
        if row is None:
            return None
        return {name: row[name] for name in tbl.column_names}

    def rows(
        self,
        table: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Live rows matching equality filters (a list value means IN)."""
        tbl = schema.table(table)
        clauses, params = [], []
        for name, value in (where or {}).items():
            col = tbl.column(name)
            if isinstance(value, (list, tuple, set, frozenset)):
                values = [schema.to_storage(col, v, table_name=table) for v in value]
                if not values:
                    return []
                clauses.append(f"{name} in ({', '.join('?' * len(values))})")
                params.extend(values)
            elif value is None:
                clauses.append(f"{name} is null")
            else:
                clauses.append(f"{name} = ?")
                params.append(schema.to_storage(col, value, table_name=table))
        order = tbl.column(order_by).name if order_by else "rowid"
        sql = f"select {', '.join(tbl.column_names)} from {table}"
        if clauses:
            sql += " where " + " and ".join(clauses)
        sql += f" order by {order} {'desc' if descending else 'asc'}, id"
        if limit is not None:
            if limit < 0 or offset < 0:
                raise ValidationError("limit and offset must not be negative")
            sql += " limit ? offset ?"
            params += [limit, offset]
        return self.query(sql, params)

    def count(self, table: str) -> int:
        schema.table(table)
        return self._conn.execute(f"select count(*) from {table}").fetchone()[0]

    def tombstone(self, table: str, row_id: str) -> tuple[int, bytes] | None:
        found = self._conn.execute("select hlc, site from _ss_tombstones where tbl = ? and pk = ?", (table, row_id)).fetchone()
        return None if found is None else (found[0], found[1])

    def cells(self, table: str, row_id: str) -> dict[str, merge.Cell] | None:
        """Every cell of a live row with its clock, as the merge sees it."""
        tbl = schema.table(table)
        row = self._fetch(self._sql[table].select, (row_id,))
        if row is None:
            return None
        names = (*tbl.column_names[1:], DELETED)
        known = clocks.column_clocks(names, (row["_hlc"], row["_site"]), row["_clocks"])
        return {n: merge.Cell(0 if n == DELETED else row[n], *known[n]) for n in names}

    # --- the change log -------------------------------------------------------

    def changes(self, *, after: int = 0, limit: int | None = None) -> list[LoggedChange]:
        """Local changes with sequence numbers greater than ``after``, oldest first."""
        sql = "select seq, tx, tbl, pk, hlc, cols, seen from _ss_changes where seq > ? order by seq"
        params: list[Any] = [after]
        if limit is not None:
            sql += " limit ?"
            params.append(limit)
        return [
            LoggedChange(seq, tx, tbl, pk, hlc, clocks.decode_values(cols), clocks.decode_seen(seen))
            for seq, tx, tbl, pk, hlc, cols, seen in self._conn.execute(sql, params)
        ]

    def last_seq(self) -> int:
        return self._conn.execute("select last_seq from _ss_clock where id = 1").fetchone()[0]

    # --- bookkeeping ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A summary of the replica: rows per table, the log, the schema version."""
        history = migrations.applied(self._conn)
        logged = self._conn.execute("select count(*) from _ss_changes").fetchone()[0]
        return {
            "path": self.path,
            "site_id": self.site_id.hex(),
            "schema_version": history[-1][0] if history else 0,
            "last_seq": self.last_seq(),
            "changes_logged": logged,
            "rows": {name: self.count(name) for name in schema.TABLES},
            "vector_search": self.capabilities.vector,
        }

    def meta_get(self, key: str, default: Any = None) -> Any:
        found = self._conn.execute("select value from _ss_meta where key = ?", (key,)).fetchone()
        return default if found is None else found[0]

    def meta_set(self, key: str, value: Any) -> None:
        with self.transaction():
            self._conn.execute("insert or replace into _ss_meta (key, value) values (?, ?)", (key, value))

    # --- notifications --------------------------------------------------------

    def subscribe(self, table: str | None, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(changes)`` after each commit that touched ``table``
        (every table when None). Returns a function that unsubscribes."""
        if table is not None:
            schema.table(table)
        self._subscribers.setdefault(table, []).append(callback)

        def unsubscribe() -> None:
            listeners = self._subscribers.get(table, [])
            if callback in listeners:
                listeners.remove(callback)

        return unsubscribe

    def _notify(self, notes: list[Change]) -> None:
        for table, listeners in list(self._subscribers.items()):
            relevant = notes if table is None else [n for n in notes if n.table == table]
            if not relevant:
                continue
            for callback in list(listeners):
                try:
                    callback(relevant)
                except Exception:  # a broken listener must not break the writer
                    log.exception("change subscriber %r failed", callback)
