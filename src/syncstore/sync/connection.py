"""One connection to the server, driven to a goal: the thin driver of the client session.

It joins three things that know nothing of each other: the protocol session
(:mod:`syncstore.core.client_session`), the websocket
(:mod:`syncstore.sync.transport`) and the replica's sync state
(:mod:`syncstore.sync.state`). The change log is the offline queue: pushes are
read from it after the last sequence the server has, so whatever was written
while offline, or by another process on the same file, goes out in order.

:meth:`SyncConnection.run` raises only :class:`~syncstore.errors.SyncError`
(and its subclasses): whatever else goes wrong below it, a replica error or a
bug, is converted at this boundary, with the original as its ``__cause__``.
A failure is marked final (``retryable`` False) only for the conditions named
in :data:`AUTH_CODES`, :data:`FATAL_CODES` and :func:`fatal`'s callers.

A transaction the server refuses for good is undone here: the rows it wrote
are fetched as the server holds them and each cell that still holds a refused
write takes the server's (``Replica.revert``); subscribers hear of it with
origin ``"reverted"``. Until that is done (a connection may drop first) the
refusal stays marked unreverted and the next connection fetches again.

With an older server (a lower schema version in its Welcome), the parts of
pushes it cannot take are held in the replica and written again, as new
changes, once a server that knows them is met.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, Sequence

import msgspec

from syncstore import schema
from syncstore.core import client_session as cs
from syncstore.core import hlc
from syncstore.core import protocol as p
from syncstore.core import shapes as sh
from syncstore.core import versions
from syncstore.core.merge import Cell
from syncstore.core.fingerprint import change_fingerprint
from syncstore.core.server_session import parse_resume
from syncstore.errors import (
    AuthError,
    NotAReplicaError,
    ProtocolError,
    SchemaVersionError,
    SyncAuthError,
    SyncClockDriftError,
    SyncError,
    SyncstoreError,
)
from syncstore.replica.store import Change, Replica, RevertRow
from syncstore.sync.state import SyncState, synced_tables, whole_tables
from syncstore.sync.transport import (
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_OPEN_TIMEOUT,
    TRANSPORT_ERRORS,
    Closed,
    Received,
    Transport,
    Wake,
    describe,
)

log = logging.getLogger("syncstore.sync")

DRIFT_RETRY_S = 30.0  # most time between pushes the server deferred for its clock

# Codes of server errors that no retry can fix: the token, then the rest.
AUTH_CODES = frozenset({"auth", "auth_required", "bad_token", "token_expired", "token_revoked", "forbidden"})
FATAL_CODES = frozenset({"protocol_version", "bad_site", "tenant_deleted"})


class _ConnectAgain(SyncError):
    """End this connection and open the next one at once (this file took a new
    site id, or the server refused a push whose history it does not have)."""


def fatal(message: str, *, code: str) -> SyncError:
    """A sync failure that retrying will not mend (the background loop stops)."""
    exc = SyncError(message)
    exc.code = code
    exc.retryable = False
    return exc


def sync_error(exc: BaseException) -> SyncError:
    """Any failure of a sync round as a SyncError (raise it ``from exc``).
    A replica file that is not a replica, or was made by a newer syncstore,
    is final; anything else may pass (a locked file, a full disk, a bug
    that a later connection does not hit)."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, AuthError):
        converted: SyncError = SyncAuthError(str(exc))
    elif isinstance(exc, TRANSPORT_ERRORS):
        # From a transport that let it through (another transport_factory's).
        converted = SyncError(f"the connection failed ({describe(exc)})")
    elif isinstance(exc, SyncstoreError):
        converted = SyncError(str(exc))
        converted.code = exc.code
        converted.retryable = not isinstance(exc, (NotAReplicaError, SchemaVersionError))
    else:
        converted = SyncError(f"the sync client failed unexpectedly ({type(exc).__name__}: {exc})")
        converted.code = "internal"
    return converted


class RoundResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one connection achieved."""

    pushed: int  # local changes the server acknowledged during the connection
    received: int  # server transactions applied here
    rejected: int  # local transactions the server refused
    conflicts: int  # conflict records received
    acked_seq: int
    cursor: int
    snapshot_rows: int = 0  # rows received in snapshots (a new replica or shape)
    resnapshots: int = 0  # times the server said our cursor was compacted away


class SyncConnection:
    """Connects, says hello, then pushes and pulls until told to stop or, with
    ``until_settled``, until everything written before the start is
    acknowledged and the server's log is applied up to date."""

    def __init__(
        self,
        replica: Replica,
        url: str,
        *,
        token: str,
        notify: Callable[[list[Change]], None] | None = None,
        on_update: Callable[[cs.ClientSession | None], None] | None = None,
        max_in_flight: int = cs.DEFAULT_MAX_IN_FLIGHT,
        max_batch: int = cs.DEFAULT_MAX_BATCH,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        max_frame: int = DEFAULT_MAX_FRAME,
        poll_interval: float = 1.0,
        transport_factory: Callable[..., Transport] = Transport,
        shapes: Sequence[p.Shape] | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
    ):
        self.replica = replica
        self.url = url
        self.state = SyncState(replica)
        self._token = token
        self._notify = notify
        self._on_update = on_update
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._open_timeout = open_timeout
        self._max_frame = max_frame
        self._poll = poll_interval
        self._transport_factory = transport_factory  # another transport (a proxy, a test's) fits here
        self._transport: Transport | None = None
        self._counts = {"pushed": 0, "received": 0, "rejected": 0, "conflicts": 0, "snapshot_rows": 0, "resnapshots": 0}
        self.session: cs.ClientSession | None = None
        # What to sync: every table whole unless shapes are given.
        self.shapes = list(shapes) if shapes is not None else whole_tables()
        self._resnapshot = False  # the server compacted our cursor away: rebuild when nothing is pending
        # Filtered shapes, by key and by table: rows inside them are checked
        # against the server (see _reconcile_acked and _reconcile_chunk).
        self._filtered: dict[str, sh.ShapeFilter] = {}
        self._chunk_after: dict[str, str] = {}  # per snapshot: the id its last chunk this session ended at
        self._fetch_upto = 0  # this connection asked for the rows of our changes up to here
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        # Resolutions: the ones sent on this connection, and whether to look for new ones.
        self._resolutions_sent: set[str] = set()
        self._look_for_resolutions = True
        # The server's clock, from its Welcome: (its time then, our monotonic time then).
        self._server_clock: tuple[int, float] | None = None
        self._max_drift_ms = hlc.DEFAULT_MAX_DRIFT_MS
        self._keeps_server_time = False  # the replica keeps the server's time (our clock is past its cap)
        self.held: SyncClockDriftError | None = None  # why local changes are held back now
        self._look_again_at = 0.0  # when held: when to look at them again (monotonic)
        self._warned = False  # the hold was logged (once per connection)
        # Refused transactions being undone on this connection: per fetch, the
        # rows it asked for; per row, the clocks of the refused writes; per
        # transaction, the fetches it still waits for.
        self._reverts: dict[str, tuple[str, list[str]]] = {}
        self._revert_clocks: dict[tuple[str, str], set[tuple[int, bytes]]] = {}
        self._revert_waits: dict[int, set[str]] = {}
        # Rows whose revert fetch is out, and those of them a server change
        # reached meanwhile (fetched again once reverted: see _reverted).
        self._reverting: set[tuple[str, str]] = set()
        self._refetch: set[tuple[str, str]] = set()

    def wake(self) -> None:
        """Local changes were written: push them now rather than at the next poll."""
        transport = self._transport
        if transport is not None:
            transport.wake()

    def run(
        self,
        *,
        until_settled: bool,
        timeout: float | None = None,
        stop: threading.Event | None = None,
    ) -> RoundResult:
        """Connect and sync until ``stop`` is set or, with ``until_settled``,
        until settled. Raises only SyncError (see :func:`sync_error`)."""
        try:
            # A connection that found this file to be a copy (it took a new
            # site id) ends; the next one, under the new id, follows at once.
            for attempt in range(3):
                try:
                    return self._run(until_settled=until_settled, timeout=timeout, stop=stop)
                except _ConnectAgain:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover
        except SyncError:
            raise
        except Exception as exc:
            raise sync_error(exc) from exc

    def _run(
        self,
        *,
        until_settled: bool,
        timeout: float | None,
        stop: threading.Event | None,
    ) -> RoundResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            subscriptions = self.state.subscriptions(self.shapes)
        except ProtocolError as exc:
            raise fatal(f"not a shape this client can sync: {exc}", code="bad_shape") from None
        checked = [sh.check_shape(shape) for shape in self.shapes]
        self._filtered = {sh.shape_key(found): found for found in checked if not found.whole}
        # A resumed snapshot's rows before its resume key were checked by the
        # connection that took their chunks: check from there on.
        self._chunk_after = {sub.id: _resumed_after(sub) for sub in subscriptions if sub.snapshot and sub.resume}
        self._fetch_upto = 0
        self._reverts, self._revert_clocks, self._revert_waits = {}, {}, {}
        self._reverting, self._refetch = set(), set()
        if self._filtered:
            self.state.start_reconciling()
        session = cs.ClientSession(
            token=self._token,
            site=self.replica.site_id,
            tables=synced_tables(),
            cursor=self.state.cursor,
            acked_seq=self.state.acked_seq,
            max_in_flight=self._max_in_flight,
            max_batch=self._max_batch,
            subscriptions=subscriptions,
        )
        self.session = session
        open_timeout = self._open_timeout
        if deadline is not None:
            open_timeout = max(0.1, min(open_timeout, deadline - time.monotonic()))
        transport = self._transport_factory(
            self.url,
            open_timeout=open_timeout,
            max_frame=self._max_frame,
            max_queue=self._max_queue,
            max_queue_bytes=self._max_queue_bytes,
        )
        self._transport = transport
        try:
            target = self.replica.last_seq()
            session.start()
            while True:
                if stop is not None and stop.is_set():
                    break
                if session.state is cs.State.READY:
                    self._fill_pushes(session)
                    if self._resnapshot and not session.in_flight and self.state.reset_for_resnapshot(self.shapes):
                        self._resnapshot = False
                        session.cursor = 0
                        self._chunk_after = {}
                        session.subscribe(self.state.subscriptions(self.shapes))
                    if self._look_for_resolutions:
                        self._report_resolutions(session)
                for message in session.messages_to_send():
                    transport.send(message)
                self._changed(session)
                # Done when what was written before the start is acknowledged:
                # a writer that never pauses must not keep the round going.
                if until_settled and session.settled and session.acked_seq >= target:
                    break
                if until_settled and session.settled and self.held is not None:
                    raise self.held
                wait = self._poll
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise SyncError(
                            f"{transport.url}: sync did not finish within {timeout:g}s "
                            f"(acked {session.acked_seq} of {target}, up to date: {session.up_to_date})"
                        )
                    wait = min(wait, left)
                if self.held is not None:
                    wait = max(0.0, min(wait, self._look_again_at - time.monotonic()))
                item = transport.get(wait)
                if isinstance(item, Received):
                    session.receive(item.message)
                    self._handle(session, session.events_received())
                elif isinstance(item, Closed):
                    raise item.error
                else:
                    # Woken by a local commit (a resolution among them?), or
                    # idle for a poll interval (another process's?).
                    self._look_for_resolutions = True
        except ProtocolError as exc:
            raise SyncError(f"{transport.url}: the server broke the protocol ({exc})") from None
        finally:
            self._transport = None
            transport.close()
            self._changed(session, connected=False)
        return RoundResult(acked_seq=session.acked_seq, cursor=session.cursor, **self._counts)

    # --- pushing --------------------------------------------------------------

    def _fill_pushes(self, session: cs.ClientSession) -> None:
        held = self.held
        if held is not None:
            if time.monotonic() < self._look_again_at:
                return
            self.held = None  # look again: _within_drift holds them again if need be
        while session.can_push:
            batch = self._next_batch(session)
            if not batch:
                break
            batch = self._within_drift(batch)
            if not batch:
                break
            through = batch[-1].changes[-1].seq
            known = session.server_known
            if known is not None:
                # An older server: keep back what it cannot take (it would
                # refuse it for good), push the rest.
                batch, kept = versions.strip_push(batch, known)
                if kept:
                    self.state.hold(kept)
            if batch:
                session.push(batch, through=through)
            else:
                session.skip(through)
        if held is not None and self.held is None:
            log.info("local changes held back for the server's clock go out now")
            self._check_clock()

    # --- resolutions ------------------------------------------------------------

    def _report_resolutions(self, session: cs.ClientSession) -> None:
        """Send the resolutions made here that the server was not told of and
        this connection has not sent yet (a resolution made while connected
        goes out at once: its commit wakes the loop)."""
        self._look_for_resolutions = False
        fresh = [i for i in self.state.unreported_resolutions() if i not in self._resolutions_sent]
        if fresh:
            session.resolved(fresh)
            self._resolutions_sent.update(fresh)

    # --- the server's clock -------------------------------------------------------

    def _server_now_ms(self) -> int | None:
        if self._server_clock is None:
            return None
        server_ms, at = self._server_clock
        return server_ms + int((time.monotonic() - at) * 1000)

    def _within_drift(self, batch: list[p.LocalTx]) -> list[p.LocalTx]:
        """The leading transactions of ``batch`` the server accepts now; from
        the first stamped past its cap on, every change waits (they are pushed
        in order), and :attr:`held` says why."""
        server_now = self._server_now_ms()
        if server_now is None:
            return batch
        limit = server_now + self._max_drift_ms
        for index, tx in enumerate(batch):
            newest = max(change.hlc for change in tx.changes) >> hlc.COUNTER_BITS
            if newest > limit:
                self._hold(self._ahead_error(tx.tx, newest, server_now))
                return batch[:index]
        return batch

    def _ahead_error(self, tx: int, stamp_ms: int, server_now: int) -> SyncClockDriftError:
        cap = self._max_drift_ms
        ahead = stamp_ms - server_now
        exc = SyncClockDriftError(
            stamp_ms=stamp_ms,
            now_ms=server_now,
            max_drift_ms=cap,
            message=(
                f"{self.state.pending_changes()} local changes wait: from transaction {tx} on they are "
                f"stamped {ahead / 1000:.1f} s ahead of the sync server's time, and it accepts {cap / 1000:g} s. "
                f"They go out once its time catches up (in about {(ahead - cap) / 1000:.0f} s); to send them "
                f"sooner, correct this machine's clock and run `syncstore sync restamp`"
            ),
        )
        exc.retry_after = (ahead - cap) / 1000
        return exc

    def _hold(self, why: SyncClockDriftError, *, look_again_s: float | None = None) -> None:
        """Push nothing more until the server's time has caught up, looking
        again after ``look_again_s`` at the latest (default: the poll
        interval; the changes may be re-stamped meanwhile)."""
        if not self._warned:
            log.warning("%s", why)
            self._warned = True
        self.held = why
        wait_s = why.retry_after or 0.0
        most = self._poll if look_again_s is None else look_again_s
        self._look_again_at = time.monotonic() + max(0.05, min(wait_s, most))
        self._check_clock()

    def _check_clock(self) -> None:
        """Keep the server's time in the replica while the replica's clock is
        past the server's cap (every connection to the file then refuses
        local writes the server would refuse), and forget it once it is not."""
        server_now = self._server_now_ms()
        if server_now is None:
            return
        ahead_ms = (self.replica.last_stamp() >> hlc.COUNTER_BITS) - server_now
        if ahead_ms > self._max_drift_ms:
            self.state.keep_server_time(hlc.ServerTime(server_now, hlc.wall_ms(), self._max_drift_ms))
            self._keeps_server_time = True
        elif self._keeps_server_time:
            self.state.keep_server_time(None)
            self._keeps_server_time = False

    def _next_batch(self, session: cs.ClientSession) -> list[p.LocalTx]:
        limit = session.max_batch
        entries = self.replica.changes(after=session.pushed_seq, limit=limit + 1)
        if not entries:
            return []
        txs = cs.group_transactions(entries)
        if len(entries) > limit:
            # The read stopped inside the log: its last transaction may go on.
            if len(txs) > 1:
                txs = txs[:-1]
            else:
                txs = cs.group_transactions(self._whole_tx(session.pushed_seq, txs[0].tx))
        batch = cs.take_batch(txs, limit)
        max_frame = session.max_frame
        if max_frame > 0:
            while len(batch) > 1 and len(p.encode(p.Push(txs=batch))) > max_frame:
                batch = batch[: len(batch) // 2]
            size = len(p.encode(p.Push(txs=batch)))
            if size > max_frame:
                raise fatal(
                    f"local transaction {batch[0].tx} is {size} bytes as one push, more than the "
                    f"server accepts ({max_frame}); it cannot be split without breaking atomicity",
                    code="too_large",
                )
        return batch

    def _whole_tx(self, after: int, tx: int) -> list:
        entries = []
        while True:
            chunk = self.replica.changes(after=after, limit=10_000)
            entries += [e for e in chunk if e.tx == tx]
            if not chunk or chunk[-1].tx != tx:
                return entries
            after = chunk[-1].seq

    # --- what the server said ---------------------------------------------------

    def _handle(self, session: cs.ClientSession, events: list[cs.Event]) -> None:
        for event in events:
            if isinstance(event, cs.RemoteTx):
                if self._reverting:
                    self._reached(event.tx.changes)
                applied = self.state.apply(event.tx)
                self._counts["received"] += 1
                self._counts["conflicts"] += len(event.tx.conflicts)
                if applied and self._notify is not None:
                    self._notify(applied)
            elif isinstance(event, cs.Acked):
                before = self.state.acked_seq
                self.state.acked(event.upto_seq, event.rejected)
                merged = event.upto_seq if event.merged is None else event.merged
                self._counts["pushed"] += max(0, merged - before)
                self._counts["rejected"] += len(event.rejected)
                self._reconcile_acked(session, event.upto_seq)
                if event.rejected:
                    self._start_reverts(session)
            elif isinstance(event, cs.SnapshotChunk):
                if self._reverting:
                    self._reached(event.rows)
                    if event.columns is not None:
                        self._reached(p.RowChange(event.columns.table, i, {}) for i in event.columns.ids)
                applied = self.state.apply_snapshot(event)
                self._counts["snapshot_rows"] += event.count
                if applied and self._notify is not None:
                    self._notify(applied)
                self._reconcile_chunk(session, event)
            elif isinstance(event, cs.RowsFetched):
                # Once every fetch is answered, the acked changes they were for are reconciled.
                done = self._fetch_upto if not session.fetching else 0
                if event.id in self._reverts:
                    applied = self._reverted(session, event)
                    if done and self._filtered:
                        self.state.reconciled(done)
                else:
                    applied = self.state.apply_rows(event.rows, reconciled_seq=done)
                if applied and self._notify is not None:
                    self._notify(applied)
            elif isinstance(event, cs.Resnapshot):
                # Push what is pending, then drop the shapes' rows and take a snapshot
                # (the run loop does it once nothing waits for an ack).
                self._resnapshot = True
                self._counts["resnapshots"] += 1
            elif isinstance(event, cs.UpToDate):
                self.state.up_to_date(event.cursor)
            elif isinstance(event, cs.ResolutionsDelivered):
                self.state.reported(event.conflict_ids)
            elif isinstance(event, cs.Welcomed):
                self._welcomed(event)
                self._schema_met(session, event.server_schema)
                # Pushes merged on a connection that dropped before their Ack,
                # or whose fetches were cut off with it.
                self._reconcile_acked(session, event.acked_seq)
                self._start_reverts(session)  # refusals an earlier connection did not finish undoing
            elif isinstance(event, cs.SessionError):
                self._server_error(event)

    # --- rejected pushes: back to the server's state -----------------------------

    def _start_reverts(self, session: cs.ClientSession) -> None:
        """Fetch the rows of the refused transactions not yet undone (and not
        being undone on this connection), to return them to the server's state."""
        site = self.replica.site_id
        txs = [tx for tx in self.state.unreverted() if tx.tx not in self._revert_waits]
        if not txs:
            return
        wanted: dict[str, list[str]] = {}
        rows_of: dict[int, set[tuple[str, str]]] = {}
        for tx in txs:
            keys = rows_of.setdefault(tx.tx, set())
            for change in tx.changes:
                key = (change.table, change.id)
                self._revert_clocks.setdefault(key, set()).add((change.hlc, site))
                if key not in keys:
                    keys.add(key)
                    wanted.setdefault(change.table, []).append(change.id)
        covers: dict[tuple[str, str], str] = {}
        for table, ids in wanted.items():
            ids = list(dict.fromkeys(ids))
            for k, fetch_id in enumerate(session.fetch(table, ids)):
                asked = ids[k * p.MAX_FETCH_IDS : (k + 1) * p.MAX_FETCH_IDS]  # fetch() splits them so
                self._reverts[fetch_id] = (table, asked)
                for row_id in asked:
                    covers[(table, row_id)] = fetch_id
                    self._reverting.add((table, row_id))
        for tx, keys in rows_of.items():
            if keys and all(key in covers for key in keys):
                # (A table an older server lacks cannot be fetched: that
                # refusal waits for a server that knows it.)
                self._revert_waits[tx] = {covers[key] for key in keys}

    def _reverted(self, session: cs.ClientSession, event: cs.RowsFetched) -> list[Change]:
        table, ids = self._reverts.pop(event.id)
        server = {
            row.id: {name: Cell(*cell) for name, cell in row.cells.items()}
            for row in event.rows
            if row.table == table and row.cells
        }
        rows = [
            RevertRow(table, row_id, server.get(row_id), frozenset(self._revert_clocks.get((table, row_id), ())))
            for row_id in ids
        ]
        done = []
        for tx, waits in list(self._revert_waits.items()):
            waits.discard(event.id)
            if not waits:
                done.append(tx)
                del self._revert_waits[tx]
        applied = self.state.revert(rows, done=done)
        again = []
        for row_id in ids:
            self._reverting.discard((table, row_id))
            if (table, row_id) in self._refetch:
                self._refetch.discard((table, row_id))
                again.append(row_id)
        if again:
            # A server change of these rows came while their fetch was out: it
            # may have lost, here, to a refused cell, and the rows may have
            # been read before it. Read them again and merge (no revert).
            session.fetch(table, again)
        return applied

    def _reached(self, rows: Iterable[p.RowChange]) -> None:
        reverting = self._reverting
        for row in rows:
            key = (row.table, row.id)
            if key in reverting:
                self._refetch.add(key)

    # --- schema versions ----------------------------------------------------------

    def _schema_met(self, session: cs.ClientSession, server_schema: int) -> None:
        """Shapes whose rows miss columns a server now sends are taken again by
        snapshot; changes held for a server of this version are written again."""
        if self.state.schema_met(server_schema):
            session.subscribe(self.state.subscriptions(self.shapes))
        self.state.release_held(min(server_schema, schema.SCHEMA_VERSION))

    # --- filtered shapes: rows the stream may never correct ---------------------

    def _reconcile_acked(self, session: cs.ClientSession, upto: int) -> None:
        """Fetch the rows whose filtered columns our acked changes wrote, from
        the reconciled sequence (kept in the replica: a fetch cut off with its
        connection is asked again on the next) up to ``upto``. Our copy may lie
        inside a shape while the server's row lies outside (our write lost, or
        met a concurrent move): the entry is then routed to none of our
        shapes, and only the server's row tells."""
        if not self._filtered:
            return
        start = max(self.state.reconciled_seq, self._fetch_upto)
        if upto <= start:
            return
        self._fetch_upto = upto
        columns: dict[str, set[str]] = {}
        for found in self._filtered.values():
            columns.setdefault(found.table, set()).update(column for column, _ in found.where)
        wanted: dict[str, list[str]] = {}
        for change in self.replica.changes(after=start, limit=upto - start):
            if change.seq <= upto and columns.get(change.table, set()) & set(change.values):
                wanted.setdefault(change.table, []).append(change.id)
        for table, ids in wanted.items():
            session.fetch(table, ids)
        if not session.fetching:
            self.state.reconciled(upto)  # nothing to fetch back

    def _reconcile_chunk(self, session: cs.ClientSession, chunk: cs.SnapshotChunk) -> None:
        """Fetch the local rows inside a filtered shape that its snapshot chunk
        left out in the id range it covers (from the end of the last chunk of
        this session, or the start): the server's row lies outside the shape
        (or is not there yet), as for a row we pushed before the snapshot that
        moved out since, and the stream starts after the move."""
        found = self._filtered.get(chunk.id)
        if found is None:
            return
        ids = [row.id for row in chunk.rows]
        if chunk.columns is not None:
            ids += chunk.columns.ids
        if not ids and not chunk.last:
            return
        after = self._chunk_after.get(chunk.id, "")
        upto = None if chunk.last else max(ids)
        self._chunk_after[chunk.id] = upto or ""
        sent = set(ids)
        missing = [i for i in self.state.ids_in_shape(found, after, upto) if i not in sent]
        if missing:
            session.fetch(found.table, missing)

    def _welcomed(self, event: cs.Welcomed) -> None:
        known = self.state.tenant
        if known is not None and known != event.tenant:
            raise fatal(
                f"this replica holds tenant {known!r}'s data; the token is for tenant {event.tenant!r}. "
                f"Use a separate replica file per tenant",
                code="tenant_mismatch",
            )
        reused = self._reused(event)
        if reused is not None:
            self._take_new_site(reused)
        self.state.welcomed(tenant=event.tenant, acked_seq=event.acked_seq)
        session = self.session
        base = self.state.site_base
        if session is not None and base > session.acked_seq:
            # Changes up to the base went out under an earlier site id of this file.
            session.acked_seq = session.pushed_seq = base
        if event.server_time_ms > 0:
            self._server_clock = (event.server_time_ms, time.monotonic())
            self._max_drift_ms = event.max_drift_ms or hlc.DEFAULT_MAX_DRIFT_MS
            self._keeps_server_time = self.state.server_time is not None
            self._check_clock()

    def _reused(self, event: cs.Welcomed) -> str | None:
        """Why this file is not the one whose changes the server merged under
        its site id (a copy of the file synced, or it is an older backup), or None."""
        acked = event.acked_seq
        if acked <= self.state.site_base:
            return None  # nothing merged under this site id since the file took it
        last = self.replica.last_seq()
        if acked > last:
            return (
                f"the server has merged this replica's changes up to sequence {acked}, but this file's "
                f"log ends at {last}: it is an older backup, or a copy, of a replica file that synced since"
            )
        if not event.acked_fingerprint:
            return None  # a server that keeps no fingerprint: nothing more to compare
        found = self.replica.changes(after=acked - 1, limit=1)
        if not found or found[0].seq != acked:
            return None  # no entry of ours there to compare with
        mine = change_fingerprint(found[0].hlc, found[0].table, found[0].id)
        if mine != event.acked_fingerprint:
            return (
                f"the change the server merged at sequence {acked} of this replica's site is not this "
                f"file's: the file is a copy of a replica file that synced its own changes since"
            )
        return None

    def _take_new_site(self, reason: str) -> None:
        """Re-key this file (a copy): a new site id, under which its changes the
        server has not merged as its own are pushed again; then connect again."""
        merged = min(self.state.acked_seq, self.replica.last_seq())
        new = self.state.take_new_site(merged_upto=merged, reason=reason)
        message = (
            f"{self.replica.path}: {reason}. It now syncs as a new site ({new.new.hex()}, was {new.old.hex()}); "
            f"its {new.changes} changes after sequence {merged} are pushed again under it, and nothing is lost"
        )
        log.warning("%s", message)
        raise _ConnectAgain(message)

    def _server_error(self, event: cs.SessionError) -> None:
        # Even an error the server calls non-fatal ends this connection: it
        # answers a push or a subscribe of ours that will now never be acked
        # or served, so waiting on would hang. The next connection starts clean.
        text = f"server error {event.code}: {event.message}"
        if event.code in AUTH_CODES:
            exc = SyncAuthError(text)
            exc.code = event.code
            raise exc
        if event.code in FATAL_CODES:
            raise fatal(text, code=event.code)
        if event.code == "clock_drift" and not event.fatal:
            # The server merged what came before a push stamped past its cap
            # and dropped the rest: hold them on this connection (downloads
            # go on) and push again when its time has caught up.
            session = self.session
            assert session is not None
            session.retract_pushes()
            why = SyncClockDriftError(
                stamp_ms=0, now_ms=0, max_drift_ms=self._max_drift_ms,
                message=f"{self.state.pending_changes()} local changes wait: {text}",
            )  # fmt: skip
            why.retry_after = event.retry_after_ms / 1000
            # Each try costs the server a merge: look again less often than
            # our own estimate of its clock would.
            self._hold(why, look_again_s=max(self._poll, DRIFT_RETRY_S))
            return
        if event.code == "site_reused":
            # A push met another copy's history: the next Welcome says so, and
            # this file takes a new site id then.
            raise _ConnectAgain(text)
        error = SyncError(text)
        error.code = event.code
        if event.retry_after_ms > 0:
            error.retry_after = event.retry_after_ms / 1000
        raise error

    def _changed(self, session: cs.ClientSession, *, connected: bool = True) -> None:
        if self._on_update is not None:
            self._on_update(session if connected else None)


def _resumed_after(sub: cs.Subscription) -> str:
    """The id a resumed snapshot continues after ("" if its key does not say:
    then every row is checked again, which costs fetches, not correctness)."""
    try:
        return parse_resume(sub.resume, len(sub.shapes))[1]
    except ProtocolError:
        return ""
