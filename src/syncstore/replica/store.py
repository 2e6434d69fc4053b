"""The replica: reads and writes with change capture, in atomic transactions.

Every write to a synced table goes through :class:`Replica`, which in the same
SQLite transaction writes the row, its per-column clocks and one entry in the
change log (``_ss_changes``). A rolled-back transaction leaves nothing behind.
Writes from other replicas arrive through :meth:`Replica.apply_remote`, which
merges them cell by cell with the rule in :mod:`syncstore.core.merge` and logs
nothing (they are not ours to push).

Several processes may open one file: each write transaction starts with
``BEGIN IMMEDIATE`` and, when another connection has committed since this
one's last commit, reads the counters again, so stamps and sequence numbers
stay unique and increasing across processes. docs/replica.md describes the
file format.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import threading
from typing import Any, Callable, ContextManager, Iterable, Mapping, NamedTuple, Sequence, TypeVar

import apsw
import msgspec

from syncstore import schema
from syncstore.core import merge
from syncstore.core.hlc import DEFAULT_MAX_DRIFT_MS, HybridClock, ServerTime
from syncstore.core.ids import new_site_id, uuid7
from syncstore.errors import (
    NotFoundError,
    ReplicaError,
    SchemaVersionError,
    SyncstoreError,
    ValidationError,
)
from syncstore.replica import clocks, migrations, rowcheck, synced_schema
from syncstore.replica.connection import DEFAULT_BUSY_TIMEOUT_MS, connect, replica_error

log = logging.getLogger("syncstore.replica")

DELETED = merge.DELETED
_encode = clocks.encode_values


class Change(NamedTuple):
    """What a committed transaction did to one row; handed to subscribers."""

    table: str
    id: str
    op: str  # "insert", "update" or "delete"
    columns: tuple[str, ...]
    # "local", "remote", or "reverted": a local write the server refused for
    # good was undone (the row returned to the server's state).
    origin: str


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


class RevertRow(NamedTuple):
    """A row to return to the server's state where refused local writes left
    it: ``server`` is the server's row whole (None: it holds no such row),
    ``clocks`` the (hlc, site) of the refused writes."""

    table: str
    id: str
    server: dict[str, merge.Cell] | None
    clocks: frozenset[tuple[int, bytes]]


Subscriber = Callable[[list[Change]], None]
CloseHook = Callable[[], None]


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
        self.check = rowcheck.checker(tbl).check
        self.has_created_at = "created_at" in names
        # Rows given already checked: the values of a mapping in table order, and
        # the log entry of a value tuple. A Struct encodes to the same MessagePack
        # map as the dict the checked path logs, without building that dict.
        self.values = operator.itemgetter(*names)
        self.logged = msgspec.defstruct(
            f"Logged_{tbl.name}", [(n, object) for n in names] + [("ss_deleted", int)], rename={"ss_deleted": DELETED}
        )


_LOG = "insert into _ss_changes (seq, tx, tbl, pk, hlc, cols, seen) values (?, ?, ?, ?, ?, ?, ?)"
# The counters are the greater of the clock row and the newest log entry (see
# migration 0007): a commit whose newest entry carries the clock's last stamp
# does not rewrite the clock row, which saves a page write per commit.
_READ_CLOCK = (
    "select max(c.last_hlc, coalesce(l.hlc, 0)), max(c.last_seq, coalesce(l.seq, 0)), "
    "max(c.last_tx, coalesce(l.tx, 0)) from _ss_clock c "
    "left join (select seq, tx, hlc from _ss_changes order by seq desc limit 1) l where c.id = 1"
)
# The sync server's time as last measured, while this replica's clock runs
# past what the server accepts (kept by syncstore.sync; see core.hlc.ServerTime).
SERVER_TIME_KEY = "sync.server_time"
_READ_SERVER_TIME = "select value from _ss_meta where key = 'sync.server_time'"
_LAST_SEQ = "select max(last_seq, coalesce((select max(seq) from _ss_changes), 0)) from _ss_clock where id = 1"
_WRITE_CLOCK = "update _ss_clock set last_hlc = ?, last_seq = ?, last_tx = ? where id = 1"
_HLC_MAX = 2**63 - 1


_M = TypeVar("_M", bound=Callable[..., Any])


def _server_time(conn: apsw.Connection) -> ServerTime | None:
    found = conn.execute(_READ_SERVER_TIME).fetchone()
    return None if found is None else ServerTime.decode(found[0])


def _stamp(hlc: Any) -> int:
    if type(hlc) is not int or not 0 < hlc <= _HLC_MAX:
        raise ValidationError(f"hlc must be a positive 64-bit integer stamp, got {hlc!r}")
    return hlc


def _boundary(method: _M) -> _M:
    """A public method: it holds the replica's lock, and errors of apsw raised
    inside leave it as syncstore errors (a corrupt page met by a read, a full
    disk met by a write)."""

    @functools.wraps(method)
    def wrapper(self: Replica, *args: Any, **kwargs: Any) -> Any:
        # One connection is used by one thread at a time (apsw refuses more):
        # a read from one thread waits for another thread's transaction.
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except apsw.Error as exc:
                raise replica_error(self.path, exc) from None

    return wrapper  # type: ignore[return-value]


class _Transaction:
    """The context manager behind :meth:`Replica.transaction` (a class, not a
    generator: it runs around every single-row write, so its cost counts)."""

    __slots__ = ("_replica", "_outer", "_marker", "_seq")

    def __init__(self, replica: Replica):
        self._replica = replica

    def __enter__(self) -> Replica:
        r = self._replica
        r._lock.acquire()
        try:
            self._outer = r._depth == 0
            self._marker = len(r._notes)
            self._seq = r._seq
            if self._outer:
                r._begin()
            else:
                r._conn.execute(f"savepoint ss_{r._depth}")
        except apsw.Error as exc:
            r._lock.release()
            raise replica_error(r.path, exc) from None
        except BaseException:
            r._lock.release()
            raise
        r._depth += 1
        return r

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        r = self._replica
        notes: list[Change] = []
        try:
            r._depth -= 1
            if exc_type is not None:
                del r._notes[self._marker :]
                if self._outer:
                    r._rollback()
                elif r._conn.in_transaction:  # (an I/O error may have ended it already)
                    r._conn.execute(f"rollback to ss_{r._depth}")
                    r._conn.execute(f"release ss_{r._depth}")
                    r._seq = self._seq  # the rolled-back entries' numbers are free again
                return False
            if not self._outer:
                r._conn.execute(f"release ss_{r._depth}")
                return False
            try:
                r._commit()
            except BaseException as error:
                r._rollback()
                r._notes.clear()
                if isinstance(error, apsw.Error):
                    raise replica_error(r.path, error) from None
                raise
            notes, r._notes = r._notes, []
        finally:
            r._lock.release()
        if notes:
            r.notify(notes)
        return False


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
        self._lock = threading.RLock()
        self.readonly = readonly
        self.busy_timeout_ms = busy_timeout_ms  # for another connection to this file that should wait as long
        self._conn, self.capabilities = connect(
            self.path,
            readonly=readonly,
            busy_timeout_ms=busy_timeout_ms,
            # Refuse another program's database before WAL mode is written into it.
            check=lambda conn: migrations.check_is_replica(conn, self.path, allow_empty=not readonly),
        )
        try:
            self._open_schema()
            self._site_id: bytes = self.meta_get("site_id")
            self._site_version: int | None = self._conn.data_version()
        except apsw.Error as exc:
            self._conn.close()
            raise replica_error(self.path, exc) from None
        except BaseException:
            self._conn.close()
            raise
        self.clock = HybridClock(max_drift_ms=max_drift_ms)
        self._depth = 0
        # The current write transaction: its number, the last sequence number it
        # used, and whether it logged anything (then the clock row is written).
        self._tx: int | None = None
        self._tx_used = False
        self._seq = 0
        # The newest entry this class logged in the current transaction (seq, hlc).
        self._logged_seq = -1
        self._logged_hlc = -1
        # The counters as of this connection's last look at the clock row, and
        # the file's data version then: an unchanged version at the next BEGIN
        # means no other connection has committed, so the row need not be read.
        self._last_seq = 0
        self._last_tx = 0
        self._version: int | None = None
        self._no_tombstones: set[str] = set()  # tables with no tombstone, as of _version
        self._notes: list[Change] = []
        self._subscribers: dict[str | None, list[Subscriber]] = {}
        self._close_hooks: list[CloseHook] = []
        self._sql = {name: _Sql(tbl) for name, tbl in schema.TABLES.items()}

    # --- opening --------------------------------------------------------------

    def _open_schema(self) -> None:
        conn = self._conn
        if self.readonly:
            migrations.check_not_newer(conn, self.path)
            missing = migrations.pending(conn)
            if missing:
                raise SchemaVersionError(
                    f"{self.path}: the replica needs migration {missing[0].version} ({missing[0].name}); "
                    "open it once read-write (or run `syncstore migrate`) first"
                )
            return
        migrations.migrate(conn, self.path)
        synced_schema.take(conn)  # cells of columns this library adds: unwritten, not written at insert
        # Only a new replica writes here: opening must not wait for another writer.
        if conn.execute("select 1 from _ss_meta where key = 'site_id'").fetchone() is None:
            conn.execute("insert or ignore into _ss_meta (key, value) values ('site_id', ?)", (new_site_id(),))

    def close(self) -> None:
        """Run the :meth:`on_close` callbacks, then close the connection."""
        try:
            while self._close_hooks:
                hook = self._close_hooks.pop()  # newest first; each runs once
                try:
                    hook()
                except Exception:  # the file must still be closed
                    log.exception("close callback %r failed", hook)
        finally:
            self._conn.close()

    def on_close(self, callback: CloseHook) -> Callable[[], None]:
        """Call ``callback()`` when the replica closes, while its connection is
        still open: the place to write buffered data. Callbacks run newest
        first; one that raises is logged and the close goes on. Returns a
        function that cancels the registration."""
        self._close_hooks.append(callback)

        def cancel() -> None:
            if callback in self._close_hooks:
                self._close_hooks.remove(callback)

        return cancel

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def site_id(self) -> bytes:
        """This file's site id: the origin of its writes. A file that turns out
        to be a copy of another takes a new one (see :mod:`syncstore.replica.rekey`),
        possibly on another connection: outside a transaction it is read again
        when the file changed."""
        if self._depth == 0:
            with self._lock:
                version = self._conn.data_version()
                if version != self._site_version:
                    self._site_id = self._conn.execute("select value from _ss_meta where key = 'site_id'").fetchone()[0]
                    self._site_version = version
        return self._site_id

    @site_id.setter
    def site_id(self, value: bytes) -> None:
        self._site_id = value

    @property
    def connection(self) -> apsw.Connection:
        """The underlying apsw connection, for reads the API does not cover."""
        return self._conn

    # --- transactions ---------------------------------------------------------

    def transaction(self) -> ContextManager[Replica]:
        """Atomic writes: the outermost level is a ``BEGIN IMMEDIATE`` transaction,
        inner levels are savepoints. Subscribers hear of the changes after commit."""
        return _Transaction(self)

    @property
    def in_transaction(self) -> bool:
        """Whether a :meth:`transaction` is open on this replica (on any thread)."""
        return self._depth > 0

    def _begin(self) -> None:
        if self.readonly:
            raise ReplicaError(f"{self.path}: opened read-only")
        conn = self._conn
        conn.execute("begin immediate")
        try:
            version = conn.data_version()
            if version != self._version:
                last_hlc, self._last_seq, self._last_tx = conn.execute(_READ_CLOCK).fetchone()
                # The file's clock, even when lower than this connection's:
                # re-stamping (syncstore.sync.restamp) may have set it back.
                self.clock.reset(last_hlc)
                self.clock.server = _server_time(conn)
                # The site id too: a copy of the file may have taken a new one (replica.rekey).
                self._site_id = conn.execute("select value from _ss_meta where key = 'site_id'").fetchone()[0]
                self._site_version = version
                self._no_tombstones.clear()
                self._version = version
        except BaseException:
            self._rollback()
            raise
        self._seq = self._last_seq
        self._tx = self._last_tx + 1
        self._tx_used = False
        self._logged_seq = -1

    def _commit(self) -> None:
        conn = self._conn
        used = self._tx_used
        # The clock row may be skipped when the newest log entry (written by this
        # class in this transaction) already holds the counters: its seq is the
        # last one used and its stamp the clock's last. Anything else (entries
        # written by other modules, a remote stamp observed, a caller-given stamp
        # older than the clock) writes the row.
        if used and not (self._logged_seq == self._seq and self._logged_hlc == self.clock.last):
            conn.execute(_WRITE_CLOCK, (self.clock.last, self._seq, self._tx))
        conn.execute("commit")
        if used:
            self._last_seq, self._last_tx = self._seq, self._tx
        self._tx = None
        # Our own commit changes the data version too: note the new one, so that
        # only another connection's commit makes the next BEGIN read the clock row.
        self._version = conn.data_version()

    def _rollback(self) -> None:
        self._tx = None
        self._version = None  # read the clock row again at the next BEGIN
        # Some errors (a full disk, an I/O error) end the transaction themselves;
        # a second ROLLBACK would hide the real error behind "no transaction".
        if self._conn.in_transaction:
            self._conn.execute("rollback")

    def _given_hlc(self, hlc: Any) -> int:
        """Check a caller-given clock stamp (imports): an int, not too far ahead."""
        self.clock.check(_stamp(hlc))
        return hlc

    def _given_hlcs(self, hlcs: Iterable[Any], count: int) -> list[int]:
        """Check one caller-given stamp per row (the drift of the newest is what counts)."""
        stamps = [_stamp(hlc) for hlc in hlcs]
        if len(stamps) != count:
            raise ValidationError(f"hlcs must hold one stamp per row: {len(stamps)} stamps for {count} rows")
        if stamps:
            self.clock.check(max(stamps))
        return stamps

    # --- local writes ---------------------------------------------------------

    def insert(self, table: str, values: Mapping[str, Any], *, hlc: int | None = None) -> str:
        """Insert one row; fills ``id`` (UUIDv7) and timestamps when absent. Returns the id.

        ``hlc`` stamps the write with a given clock instead of a fresh tick, for
        imported data whose time is known (an older stamp loses to later edits).
        """
        return self.insert_many(table, (values,), hlc=hlc)[0]

    @_boundary
    def insert_many(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]],
        *,
        hlc: int | None = None,
        hlcs: Iterable[int] | None = None,
        checked: bool = False,
    ) -> list[str]:
        """Insert rows in one transaction (a savepoint inside an open one); returns their ids.

        Every row is validated before anything is written, so a bad row leaves
        nothing behind; an id that already exists is a :class:`ValidationError`.

        ``hlc`` stamps every row with one given clock, ``hlcs`` each row with its
        own (imports whose rows have different times); either as for :meth:`insert`.

        ``checked=True`` takes rows whose values were checked when the caller
        took them in (the events API, the legacy import): each is what
        ``schema.validate_row(table, values, insert=True)`` returns (every column,
        canonical values, the id included) as a mapping, or as a tuple in column
        order. Only their shape is checked here, so the write costs what SQLite
        costs; a value that is not canonical would be stored as given.
        """
        tbl = schema.table(table)
        sql = self._sql[table]
        if hlc is not None:
            if hlcs is not None:
                raise ValidationError("give hlc or hlcs, not both", table=table)
            hlc = self._given_hlc(hlc)
        given_ids: list[str] | None  # ids the caller chose (they may name a deleted row); None: every row's
        if checked:
            prepared: list[Any] = self._complete_rows(tbl, sql, rows)
            given_ids = None
        else:
            prepared, given_ids = self._checked_rows(tbl, sql, rows)
        if not prepared:
            return []
        if hlcs is not None:
            stamps: Sequence[int] = self._given_hlcs(hlcs, len(prepared))
        elif hlc is not None:
            stamps = [hlc] * len(prepared)
        else:
            stamps = ()  # fresh ones, taken inside the transaction
        try:
            with self.transaction():
                return self._insert_rows(tbl, sql, prepared, stamps, given_ids)
        except apsw.ConstraintError as exc:
            raise self._insert_error(tbl, prepared, exc) from None

    def _checked_rows(
        self, tbl: schema.Table, sql: _Sql, rows: Iterable[Mapping[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Rows validated and completed (id, timestamps), as new dicts in table order."""
        check = sql.check
        now = None  # made when a row needs it: rows may carry their own timestamps
        prepared: list[dict[str, Any]] = []
        given_ids: list[str] = []
        for values in rows:
            if type(values) is not dict and not isinstance(values, Mapping):  # the ABC check is slow
                raise ValidationError("row values must be a mapping", table=tbl.name)
            row_id = values.get("id")
            if row_id is not None:
                given_ids.append(row_id)
            if row_id is None or (sql.has_created_at and "created_at" not in values) or (
                tbl.timestamps and "updated_at" not in values
            ):
                row = dict(values)  # fill in what is missing; never change the caller's mapping
                if row_id is None:
                    row["id"] = uuid7()
                if sql.has_created_at and "created_at" not in row:
                    row["created_at"] = now = now or schema.now_iso()
                if tbl.timestamps and "updated_at" not in row:
                    row["updated_at"] = row["created_at"]
                values = row
            prepared.append(check(values, insert=True))  # a new dict: ours to change
        return prepared, given_ids

    def _complete_rows(self, tbl: schema.Table, sql: _Sql, rows: Iterable[Any]) -> list[tuple[Any, ...]]:
        """Rows given as checked, as value tuples in table order; only their shape is checked."""
        width = len(sql.columns)
        values = sql.values
        out = []
        for row in rows:
            if type(row) is not tuple:
                if not isinstance(row, Mapping):
                    raise ValidationError("a checked row must be a mapping or a tuple", table=tbl.name)
                try:
                    row = values(row) if len(row) == width else ()
                except KeyError:
                    row = ()
            if len(row) != width:
                raise ValidationError("a checked row must hold every column, and only those", table=tbl.name)
            out.append(row)
        return out

    def _insert_rows(
        self,
        tbl: schema.Table,
        sql: _Sql,
        rows: list[Any],
        stamps: Sequence[int],
        given_ids: list[str] | None,
    ) -> list[str]:
        """Write checked rows (dicts from the checker, ours to change, or value
        tuples), their clocks and log entries; returns their ids."""
        conn = self._conn
        name = tbl.name
        site = self.site_id
        if not stamps:
            first = self.clock.tick_many(len(rows))
            stamps = range(first, first + len(rows))
        else:
            self.clock.observe(max(stamps))  # later local writes must sort after them
        if given_ids is None:
            given_ids = [row[0] for row in rows]
        if given_ids and self._has_tombstones(name):
            # Inserting an id that was deleted brings the row back (the insert is newer).
            conn.executemany("delete from _ss_tombstones where tbl = ? and pk = ?", [(name, i) for i in given_ids])
        tx = self._tx
        seq = self._seq
        params = []
        entries = []
        if type(rows[0]) is dict:
            ids = []
            for row, stamp in zip(rows, stamps):
                # A checked insert row holds every column in table order.
                params.append((*row.values(), stamp, site, None))
                seq += 1
                row_id = row["id"]
                ids.append(row_id)
                row[DELETED] = 0
                entries.append((seq, tx, name, row_id, stamp, _encode(row), None))
        else:
            ids = given_ids
            logged = sql.logged
            for row, stamp in zip(rows, stamps):
                params.append((*row, stamp, site, None))
                seq += 1
                entries.append((seq, tx, name, row[0], stamp, _encode(logged(*row, 0)), None))
        if len(rows) == 1:  # execute is cheaper than executemany for one row
            conn.execute(sql.insert, params[0])
            conn.execute(_LOG, entries[0])
        else:
            conn.executemany(sql.insert, params)
            conn.executemany(_LOG, entries)
        self._seq = self._logged_seq = seq
        self._logged_hlc = stamps[-1]
        self._tx_used = True
        if self._subscribers:  # a subscriber hears of the writes made after it subscribed
            columns = sql.columns
            self._notes.extend([Change(name, row_id, "insert", columns, "local") for row_id in ids])
        return ids

    def _has_tombstones(self, table: str) -> bool:
        # Remembered per table while no other connection commits (see _begin);
        # tombstones are written only through _bury, which forgets the table.
        if table in self._no_tombstones:
            return False
        found = self._conn.execute("select 1 from _ss_tombstones where tbl = ? limit 1", (table,)).fetchone()
        if found is None:
            self._no_tombstones.add(table)
        return found is not None

    def _insert_error(self, tbl: schema.Table, rows: list[Any], exc: apsw.Error) -> SyncstoreError:
        """Name the id that broke an insert (the batch has been rolled back by now)."""
        seen: set[str] = set()
        ids = [row["id"] if type(row) is dict else row[0] for row in rows]
        existing: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            existing.update(
                found
                for (found,) in self._conn.execute(
                    f"select id from {tbl.name} where id in ({', '.join('?' * len(chunk))})", chunk
                )
            )
        for row_id in ids:
            if row_id in seen or row_id in existing:
                return ValidationError(f"a row with id {row_id!r} already exists", table=tbl.name, field="id")
            seen.add(row_id)
        return replica_error(self.path, exc)

    @_boundary
    def update(
        self, table: str, row_id: str, values: Mapping[str, Any], *, hlc: int | None = None, touch: bool = True
    ) -> None:
        """Write some columns of one row; ``updated_at`` is set unless given, or
        unless ``touch=False`` (bookkeeping that is not an edit of the row's
        content, e.g. memory access counts). ``hlc`` as for :meth:`insert`."""
        tbl = schema.table(table)
        if tbl.append_only:
            raise ValidationError("rows are append-only and cannot be updated", table=table)
        if hlc is not None:
            hlc = self._given_hlc(hlc)
        if not isinstance(values, Mapping):
            raise ValidationError("row values must be a mapping", table=table)
        changes = dict(values)
        changes.pop("id", None)
        if touch and tbl.timestamps and "updated_at" not in changes:
            changes["updated_at"] = schema.now_iso()
        changes = self._sql[table].check(changes, insert=False)
        if not changes:
            raise ValidationError("nothing to update", table=table)
        with self.transaction():
            self._update_row(tbl, row_id, changes, hlc=hlc)

    def _update_row(self, tbl: schema.Table, row_id: str, changes: dict[str, Any], *, hlc: int | None = None) -> None:
        found = self._conn.execute(self._sql[tbl.name].select_clock, (row_id,)).fetchone()
        if found is None:
            raise NotFoundError(tbl.name, row_id)
        base_hlc, base_site, blob = found
        base = (base_hlc, base_site)
        seen = {name: clocks.clock_of(name, base, blob) for name in changes}
        if hlc is None:
            hlc = self.clock.tick()
        else:
            # A given (older) stamp only wins the columns the merge rule gives it:
            # a column already holding a newer version keeps it, as it would on
            # every other replica and on the server.
            stamp = (hlc, self.site_id)
            changes = {name: value for name, value in changes.items() if stamp > seen[name]}
            seen = {name: seen[name] for name in changes}
            self.clock.observe(hlc)
            if not changes:
                return
        new_blob = clocks.with_writes(blob, changes, (hlc, self.site_id))
        names = list(changes)
        assignments = ", ".join(f"{name} = ?" for name in names)
        self._conn.execute(
            f"update {tbl.name} set {assignments}, _clocks = ? where id = ?",
            (*[changes[n] for n in names], new_blob, row_id),
        )
        self._log(tbl.name, row_id, hlc, changes, seen)
        if self._subscribers:
            self._notes.append(Change(tbl.name, row_id, "update", tuple(names), "local"))

    @_boundary
    def delete(self, table: str, row_id: str) -> None:
        """Delete one row, leaving a tombstone that syncs like any write."""
        tbl = schema.table(table)
        if tbl.append_only:
            raise ValidationError("rows are append-only and cannot be deleted", table=table)
        with self.transaction():
            before = self._row_cells(tbl, row_id)
            if before is None:
                raise NotFoundError(table, row_id)
            # What the writer saw: every cell but the id (which never changes).
            seen = {name: (cell.hlc, cell.site) for name, cell in before.items()}
            hlc = self.clock.tick()
            self._conn.execute(self._sql[table].delete, (row_id,))
            self._bury(table, row_id, merge.Cell(1, hlc, self.site_id), before)
            self._log(table, row_id, hlc, {DELETED: 1}, seen)
            if self._subscribers:
                self._notes.append(Change(table, row_id, "delete", (), "local"))

    def _bury(self, table: str, row_id: str, stone: merge.Cell, cells: Mapping[str, merge.Cell]) -> None:
        """Write the tombstone of a row: the clock of its delete, and its other
        cells, which a partial write arriving later merges with (as the server,
        which keeps deleted rows, does) so every replica ends with the same cells."""
        # Cells at the zero clock ("nobody wrote this": a default) carry nothing to keep.
        kept = {name: cell for name, cell in cells.items() if name != DELETED and cell.hlc}
        self._no_tombstones.discard(table)
        self._conn.execute(
            "insert or replace into _ss_tombstones (tbl, pk, hlc, site, cells) values (?, ?, ?, ?, ?)",
            (table, row_id, stone.hlc, stone.site, clocks.encode_cells(kept)),
        )

    def _log(self, table: str, row_id: str, hlc: int, values: Mapping[str, Any], seen: Mapping[str, Any] | None) -> None:
        self._seq += 1
        self._tx_used = True
        self._logged_seq, self._logged_hlc = self._seq, hlc
        self._conn.execute(_LOG, (self._seq, self._tx, table, row_id, hlc, _encode(values), clocks.encode_seen(seen)))

    # --- remote writes --------------------------------------------------------

    @_boundary
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
                    if self._subscribers:
                        self._notes.append(note)
                newest = max(newest, max(c.hlc for c in change.cells.values()))
            if newest:
                self.clock.observe(newest)
                self._tx_used = True  # persist the advanced clock
        return applied

    def _checked_remote(self, change: RemoteChange) -> RemoteChange:
        """The change with canonical values and well-formed clocks, or a ValidationError."""
        tbl = schema.table(change.table)
        if not schema.is_uuid(change.id):
            raise ValidationError("id must be a UUID string", table=tbl.name, field="id")
        if not isinstance(change.cells, Mapping):
            raise ValidationError("cells must be a mapping of column to (value, hlc, site)", table=tbl.name)
        cells = {}
        for name, cell in change.cells.items():
            try:
                value, hlc, site = cell
            except (TypeError, ValueError):
                raise ValidationError("a cell must be (value, hlc, site)", table=tbl.name, field=str(name)) from None
            if type(hlc) is not int or not 0 < hlc <= _HLC_MAX:
                raise ValidationError(f"clock stamp must be a positive 64-bit integer, got {hlc!r}", table=tbl.name, field=str(name))
            if type(site) is not bytes or len(site) != 16:
                raise ValidationError("site must be 16 bytes", table=tbl.name, field=str(name))
            if name == DELETED:
                if type(value) not in (int, bool) or value not in (0, 1):
                    raise ValidationError("must be 0 or 1", table=tbl.name, field=DELETED)
                cells[name] = merge.Cell(int(value), hlc, site)
            elif name == "id":
                continue
            else:
                value = schema.to_storage(tbl.column(name), value, table_name=tbl.name)
                cells[name] = merge.Cell(value, hlc, site)
        if not cells:
            raise ValidationError("a change must carry at least one column", table=tbl.name)
        return RemoteChange(tbl.name, change.id, cells)

    def _merge_remote(self, change: RemoteChange) -> Change | None:
        tbl = schema.table(change.table)
        sql = self._sql[tbl.name]
        conn = self._conn
        names = (*tbl.column_names[1:], DELETED)  # every cell but the id
        current = self._row_cells(tbl, change.id)
        live = current is not None
        if current is None:
            current = self._buried_cells(tbl.name, change.id) or {}
        merged, changed = merge.merge_row(current, change.cells)
        if not changed:
            return None
        if merged.get(DELETED) is not None and merged[DELETED].value == 1:
            self._bury(tbl.name, change.id, merged[DELETED], merged)
            if not live:
                return None  # a deleted row stays deleted: its hidden cells changed
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
        if not live:
            conn.execute("delete from _ss_tombstones where tbl = ? and pk = ?", (tbl.name, change.id))
            conn.execute(sql.insert, (change.id, *[cells[c].value for c in sql.columns[1:]], base_hlc, base_site, blob))
            return Change(tbl.name, change.id, "insert", sql.columns, "remote")
        written = [n for n in changed if n != DELETED]
        assignments = "".join(f"{n} = ?, " for n in written)
        conn.execute(
            f"update {tbl.name} set {assignments}_hlc = ?, _site = ?, _clocks = ? where id = ?",
            (*[cells[n].value for n in written], base_hlc, base_site, blob, change.id),
        )
        if not written:
            return None  # only a clock moved (a newer "live" stamp): nothing visible changed
        return Change(tbl.name, change.id, "update", tuple(written), "remote")

    @_boundary
    def revert(self, rows: Iterable[RevertRow]) -> list[Change]:
        """Undo refused local writes, in one transaction; returns what changed
        here (origin ``"reverted"``).

        Each cell that still holds the clock of a refused write takes the
        server's cell as it is, value and clock (the server holds no such
        cell: it goes); every other cell merges with the server's by the
        merge rule, so later local writes, and newer remote ones, stay. A row
        left with no ``_deleted`` cell (a refused insert of a row the server
        never had) goes, tombstone and all. The server's cells are checked as
        :meth:`apply_remote` checks them; a bad one aborts the whole batch.
        """
        batch = [
            (row, self._checked_remote(RemoteChange(row.table, row.id, row.server)).cells if row.server else {})
            for row in rows
        ]
        applied: list[Change] = []
        with self.transaction():
            newest = 0
            for row, server in batch:
                note = self._revert_row(row, server)
                if note is not None:
                    applied.append(note)
                    if self._subscribers:
                        self._notes.append(note)
                if server:
                    newest = max(newest, max(c.hlc for c in server.values()))
            if newest:
                self.clock.observe(newest)  # later local writes sort after the server's cells
                self._tx_used = True
        return applied

    def _revert_row(self, row: RevertRow, server: dict[str, merge.Cell]) -> Change | None:
        tbl = schema.table(row.table)
        sql = self._sql[tbl.name]
        conn = self._conn
        current = self._row_cells(tbl, row.id)
        live = current is not None
        if current is None:
            current = self._buried_cells(tbl.name, row.id) or {}
        kept = {name: cell for name, cell in current.items() if (cell.hlc, cell.site) not in row.clocks}
        merged, _ = merge.merge_row(kept, server)
        if merged == current:
            return None
        deleted = merged.get(DELETED)
        if deleted is None:
            # Nothing left of the row: the server never had it.
            conn.execute("delete from _ss_tombstones where tbl = ? and pk = ?", (tbl.name, row.id))
            if not live:
                return None
            conn.execute(sql.delete, (row.id,))
            return Change(tbl.name, row.id, "delete", (), "reverted")
        if deleted.value == 1:
            self._bury(tbl.name, row.id, deleted, merged)
            if not live:
                return None
            conn.execute(sql.delete, (row.id,))
            return Change(tbl.name, row.id, "delete", (), "reverted")
        names = (*tbl.column_names[1:], DELETED)
        cells = {}
        for name in names:
            cell = merged.get(name)
            if cell is None:  # a cell nobody has written: the default, at the zero clock
                cell = merge.Cell(0 if name == DELETED else tbl.column(name).default, *clocks.ZERO)
            cells[name] = cell
        base_hlc, base_site, blob = clocks.compress({n: (c.hlc, c.site) for n, c in cells.items()})
        values = [cells[c].value for c in sql.columns[1:]]
        if not live:
            conn.execute("delete from _ss_tombstones where tbl = ? and pk = ?", (tbl.name, row.id))
            conn.execute(sql.insert, (row.id, *values, base_hlc, base_site, blob))
            return Change(tbl.name, row.id, "insert", sql.columns, "reverted")
        assignments = "".join(f"{n} = ?, " for n in sql.columns[1:])
        conn.execute(
            f"update {tbl.name} set {assignments}_hlc = ?, _site = ?, _clocks = ? where id = ?",
            (*values, base_hlc, base_site, blob, row.id),
        )
        written = tuple(n for n in sql.columns[1:] if cells[n].value != current[n].value)
        if not written:
            return None  # only clocks moved: nothing visible changed
        return Change(tbl.name, row.id, "update", written, "reverted")

    @_boundary
    def rewrite(self, table: str, row_id: str, columns: Iterable[str] | None = None) -> bool:
        """Write a row's current values again at a new clock, as a local
        change that syncs like any edit: of ``columns``, or, with None, the
        whole row (for a server that may never have had it): every column as
        an insert, or a deleted row's delete. Values do not change, so
        subscribers hear nothing. False when there is nothing to write (no
        such row; ``columns`` of a row not live here, or none of its)."""
        tbl = schema.table(table)
        with self.transaction():
            cells = self._row_cells(tbl, row_id)
            if cells is None:
                buried = self._buried_cells(tbl.name, row_id)
                if buried is None or columns is not None:
                    return False
                hlc = self.clock.tick()
                self._conn.execute(
                    "update _ss_tombstones set hlc = ?, site = ? where tbl = ? and pk = ?",
                    (hlc, self.site_id, tbl.name, row_id),
                )
                seen = {name: (cell.hlc, cell.site) for name, cell in buried.items()}
                self._log(tbl.name, row_id, hlc, {DELETED: 1}, seen)
                return True
            if columns is None:
                names = list(tbl.column_names[1:])
            else:
                names = [n for n in dict.fromkeys(columns) if n != DELETED and n in cells]
                if not names:
                    return False
            hlc = self.clock.tick()
            at = (hlc, self.site_id)
            if columns is None:
                self._conn.execute(
                    f"update {tbl.name} set _hlc = ?, _site = ?, _clocks = null where id = ?", (*at, row_id)
                )
                values = {"id": row_id, **{n: cells[n].value for n in names}, DELETED: 0}
                self._log(tbl.name, row_id, hlc, values, None)
            else:
                base_hlc, base_site, blob = self._conn.execute(self._sql[tbl.name].select_clock, (row_id,)).fetchone()
                self._conn.execute(
                    f"update {tbl.name} set _clocks = ? where id = ?", (clocks.with_writes(blob, names, at), row_id)
                )
                seen = {n: (cells[n].hlc, cells[n].site) for n in names}
                self._log(tbl.name, row_id, hlc, {n: cells[n].value for n in names}, seen)
        return True

    def _row_cells(self, tbl: schema.Table, row_id: str) -> dict[str, merge.Cell] | None:
        row = self._fetch(self._sql[tbl.name].select, (row_id,))
        if row is None:
            return None
        names = (*tbl.column_names[1:], DELETED)
        known = clocks.column_clocks(names, (row["_hlc"], row["_site"]), row["_clocks"])
        return {n: merge.Cell(0 if n == DELETED else row[n], *known[n]) for n in names}

    def _buried_cells(self, table: str, row_id: str) -> dict[str, merge.Cell] | None:
        """A deleted row's cells as the merge sees them: its kept cells and the delete."""
        found = self._conn.execute(
            "select hlc, site, cells from _ss_tombstones where tbl = ? and pk = ?", (table, row_id)
        ).fetchone()
        if found is None:
            return None
        hlc, site, blob = found
        cells = clocks.decode_cells(blob)
        cells[DELETED] = merge.Cell(1, hlc, site)
        return cells

    # --- reads ----------------------------------------------------------------

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        cursor = self._conn.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip((d[0] for d in cursor.getdescription()), row))

    @_boundary
    def query(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        """Run a read statement; rows come back as dicts of stored values."""
        cursor = self._conn.execute(sql, params)
        try:
            names = [d[0] for d in cursor.getdescription()]
        except apsw.ExecutionCompleteError:
            return []
        return [dict(zip(names, row)) for row in cursor]

    @_boundary
    def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        """One live row in stored form (without the hidden clock columns), or None."""
        tbl = schema.table(table)
        row = self._fetch(self._sql[table].select, (row_id,))
        if row is None:
            return None
        return {name: row[name] for name in tbl.column_names}

    @_boundary
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
        for name, number in (("limit", limit), ("offset", offset)):
            if number is not None and (type(number) is not int or number < 0):
                raise ValidationError(f"{name} must be a whole number, not negative; got {number!r}", table=table)
        if limit is not None or offset:
            sql += " limit ? offset ?"
            params += [-1 if limit is None else limit, offset]
        return self.query(sql, params)

    @_boundary
    def count(self, table: str) -> int:
        schema.table(table)
        return self._conn.execute(f"select count(*) from {table}").fetchone()[0]

    @_boundary
    def tombstone(self, table: str, row_id: str) -> tuple[int, bytes] | None:
        found = self._conn.execute("select hlc, site from _ss_tombstones where tbl = ? and pk = ?", (table, row_id)).fetchone()
        return None if found is None else (found[0], found[1])

    @_boundary
    def cells(self, table: str, row_id: str) -> dict[str, merge.Cell] | None:
        """Every cell of a live row with its clock, as the merge sees it."""
        return self._row_cells(schema.table(table), row_id)

    # --- the change log -------------------------------------------------------

    @_boundary
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

    @_boundary
    def last_stamp(self) -> int:
        """The newest clock stamp this file's clock has handed out or seen
        (what the next local write must pass), as committed."""
        return self._conn.execute(_READ_CLOCK).fetchone()[0]

    @_boundary
    def last_seq(self) -> int:
        """The greatest sequence number this replica has used (deleted entries included)."""
        return self._conn.execute(_LAST_SEQ).fetchone()[0]

    # --- bookkeeping ----------------------------------------------------------

    @_boundary
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

    @_boundary
    def meta_get(self, key: str, default: Any = None) -> Any:
        found = self._conn.execute("select value from _ss_meta where key = ?", (key,)).fetchone()
        return default if found is None else found[0]

    @_boundary
    def meta_set(self, key: str, value: Any) -> None:
        with self.transaction():
            self._conn.execute("insert or replace into _ss_meta (key, value) values (?, ?)", (key, value))

    # --- notifications --------------------------------------------------------

    def subscribe(self, table: str | None, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(changes)`` after each commit that touched ``table``
        (every table when None), with the writes made since it subscribed.
        Returns a function that unsubscribes."""
        if table is not None:
            schema.table(table)
        self._subscribers.setdefault(table, []).append(callback)

        def unsubscribe() -> None:
            listeners = self._subscribers.get(table, [])
            if callback in listeners:
                listeners.remove(callback)

        return unsubscribe

    def notify(self, changes: list[Change]) -> None:
        """Hand ``changes`` to this replica's subscribers, as after a commit of
        its own. For a writer on another connection to the same file (the
        events writer, the sync client): it subscribes this method on its own
        replica, so the application's listeners hear of its commits too.
        Call it after the commit, never with changes that may still roll back."""
        for table, listeners in list(self._subscribers.items()):
            relevant = changes if table is None else [c for c in changes if c.table == table]
            if not relevant:
                continue
            for callback in list(listeners):
                try:
                    callback(relevant)
                except Exception:  # a broken listener must not break the writer
                    log.exception("change subscriber %r failed", callback)
