"""The client's half of a sync session: a state machine with no I/O.

A driver owns the websocket and the replica; this class owns the protocol:
what to send when, what each answer means, how many pushes may be in flight.
It has the shape of websockets' sans-I/O ``Protocol``: feed it what arrived
with :meth:`ClientSession.receive`, then take what to send with
:meth:`ClientSession.messages_to_send` and what happened with
:meth:`ClientSession.events_received`.

States::

    IDLE --start()--> HELLO_SENT --Welcome--> READY
    HELLO_SENT / READY --Error(fatal)--> FAILED
    any --a message that breaks the protocol--> FAILED (ProtocolError raised)

Schema versions: the Hello says which version of the synced tables this
client knows, the Welcome the server's. With an older server the session
subscribes only to shapes it can serve and fetches only from tables it knows
(the driver keeps back from pushes what it cannot take, and :meth:`skip`
counts a run of changes left with nothing as acknowledged).

Subscriptions: on Welcome the session sends one Subscribe per
:class:`Subscription` it was given (by default one for every table, whole,
from the cursor). A subscription with ``snapshot`` first receives its shapes'
current rows in Snapshot chunks (:class:`SnapshotChunk` events; the driver
persists each chunk's ``resume`` key and position with the rows, so a cut-off
snapshot continues where it stopped). MustResnapshot ends every subscription
(:class:`Resnapshot` event); the driver rebuilds and calls :meth:`subscribe`.

In READY the client pushes its local transactions in sequence order (at most
``max_in_flight`` pushes waiting for an Ack: flow control, so a slow server is
not buried under a long offline queue) and receives the server's log from its
cursor on. A session lives as long as one connection: a reconnect starts a new
session from the cursor and acked sequence the driver persisted.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any, Iterable, NamedTuple, Protocol as TypingProtocol, Sequence, Union

from syncstore import schema as synced  # (``schema`` is also a parameter below)
from syncstore.core import protocol as p
from syncstore.core import versions
from syncstore.core.merge import DELETED
from syncstore.errors import ProtocolError

DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_MAX_BATCH = 500  # changes per Push when the server names no limit


class State(enum.Enum):
    IDLE = "idle"
    HELLO_SENT = "hello_sent"
    READY = "ready"
    FAILED = "failed"


# --- events -------------------------------------------------------------------


class Welcomed(NamedTuple):
    """The server accepted us. ``acked_seq`` is its record of our merged changes;
    ``previous_acked`` what we believed before (greater means the server forgot)."""

    tenant: str
    acked_seq: int
    previous_acked: int
    server_id: str
    server_time_ms: int = 0  # the server's clock when it welcomed us (0: not said)
    max_drift_ms: int = 0  # how far ahead of it the server accepts stamps (0: not said)
    server_schema: int = 1  # the version of the synced tables the server knows
    acked_fingerprint: bytes = b""  # of the site's change at acked_seq, as the server merged it


class Acked(NamedTuple):
    """Every change of ours up to ``upto_seq`` is durably merged; ``rejected``
    names the transactions among them the server refused for good."""

    upto_seq: int
    rejected: list[p.Rejection]
    # What the server merged up to (None: ``upto_seq``); ``upto_seq`` may reach
    # past it, over changes that carried nothing an older server takes.
    merged: int | None = None


class RemoteTx(NamedTuple):
    """One server transaction to apply locally, in one local transaction."""

    tx: p.ServerTx


class UpToDate(NamedTuple):
    """Everything the server had when we subscribed has been delivered."""

    cursor: int


class SessionError(NamedTuple):
    """The server reported an error; a fatal one ends the session."""

    code: str
    message: str
    fatal: bool
    retry_after_ms: int = 0  # the server says the same may succeed after this long


class ResolutionsDelivered(NamedTuple):
    """The server has read our Resolved message for these conflict records."""

    conflict_ids: list[str]


class SnapshotChunk(NamedTuple):
    """Current rows of a subscription's shapes: apply them in one local
    transaction with the resume key and position (``last``: the snapshot is
    whole, and ``cursor`` is the session's cursor from now on, kept with it)."""

    id: str
    rows: list[p.RowChange]
    position: int
    last: bool
    resume: str
    conflicts: list[p.ConflictRecord] = []  # the records of the chunk's rows, stored with them
    columns: p.Columns | None = None  # more rows, column by column
    cursor: int = 0  # with ``last``: where the log is followed from now on

    @property
    def count(self) -> int:
        """How many live rows the chunk holds (the deleted rows of its range,
        shipped as tombstones, are not counted)."""
        live = sum(1 for row in self.rows if row.cells.get(DELETED, (0,))[0] == 0)
        return live + (len(self.columns.ids) if self.columns is not None else 0)


class Resnapshot(NamedTuple):
    """The server no longer keeps the log from our cursor: every subscription
    ended; rebuild the shapes' rows from a snapshot."""

    oldest: int


class RowsFetched(NamedTuple):
    """Rows a :meth:`ClientSession.fetch` asked for, as the server holds them
    now: merge them in one local transaction (the merge rule makes that safe
    at any time; the cursor does not move)."""

    rows: list[p.RowChange]
    id: str = ""  # the fetch answered (as fetch() returned it)


Event = Union[
    Welcomed, Acked, RemoteTx, UpToDate, SessionError, ResolutionsDelivered, SnapshotChunk, Resnapshot, RowsFetched
]


class Subscription(NamedTuple):
    """What to ask for on one Subscribe."""

    id: str
    shapes: list[p.Shape]
    snapshot: bool = False  # send the shapes' current rows first
    resume: str = ""  # continue a snapshot cut off after this key
    cursor: int | None = None  # where the log starts (None: the session's cursor)


# --- pushing: local log entries grouped into transactions ------------------------


class LogEntry(TypingProtocol):
    """What the session needs of one change-log entry (the replica's LoggedChange)."""

    seq: int
    tx: int
    table: str
    id: str
    hlc: int
    values: dict[str, Any]
    seen: dict[str, tuple[int, bytes]] | None


def group_transactions(entries: Iterable[LogEntry]) -> list[p.LocalTx]:
    """Consecutive log entries of one local transaction become one LocalTx."""
    txs: list[p.LocalTx] = []
    current: list[p.LocalChange] = []
    current_tx: int | None = None
    for entry in entries:
        if entry.tx != current_tx and current:
            txs.append(p.LocalTx(tx=current_tx, changes=current))  # type: ignore[arg-type]
            current = []
        current_tx = entry.tx
        current.append(
            p.LocalChange(
                seq=entry.seq,
                table=entry.table,
                id=entry.id,
                hlc=entry.hlc,
                values=dict(entry.values),
                seen=None if entry.seen is None else {k: (v[0], v[1]) for k, v in entry.seen.items()},
            )
        )
    if current:
        txs.append(p.LocalTx(tx=current_tx, changes=current))  # type: ignore[arg-type]
    return txs


def take_batch(txs: Sequence[p.LocalTx], max_changes: int) -> list[p.LocalTx]:
    """The leading whole transactions that fit in ``max_changes`` changes.

    A transaction is never split, so one larger than the limit goes alone:
    refusing it here would block every later change forever.
    """
    batch: list[p.LocalTx] = []
    total = 0
    for tx in txs:
        size = len(tx.changes)
        if batch and total + size > max_changes:
            break
        batch.append(tx)
        total += size
    return batch


# --- the session ----------------------------------------------------------------


class ClientSession:
    """One connection's worth of the client protocol.

    ``cursor`` and ``acked_seq`` are what the replica persisted: the last
    server log position applied, the last own sequence known merged.
    ``tables`` are subscribed whole (no filters).
    """

    def __init__(
        self,
        *,
        token: str,
        site: bytes,
        tables: Sequence[str],
        cursor: int = 0,
        acked_seq: int = 0,
        schema: int = 0,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_batch: int = DEFAULT_MAX_BATCH,
        subscriptions: Sequence[Subscription] | None = None,
    ):
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._token = token
        self.site = site
        self.tables = tuple(tables)
        self.cursor = cursor
        self.acked_seq = acked_seq
        self.schema = schema
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self.state = State.IDLE
        self.tenant: str | None = None
        self.up_to_date = False
        self._live = False  # some subscribed shape follows the log from the cursor
        self._streaming = False
        self.pushed_seq = acked_seq  # the last sequence sent (or known merged)
        self.max_frame = 0  # largest frame the server accepts (0: not given)
        self.awaited_log_seq = 0  # where the server logged our pushes (Ack.log_seq)
        # Each unacked push: (its last sequence, the last sequence it stands
        # for, with the ones after it that carried nothing this server takes).
        self._in_flight: deque[tuple[int, int]] = deque()
        self._nonce = 0
        self._awaiting_pong: dict[int, list[str]] = {}  # ping nonce -> resolutions sent before it
        self._fetches: set[str] = set()  # Fetch ids sent and not answered
        self._fetch_count = 0
        self._outgoing: list[p.Message] = []
        self._events: list[Event] = []
        self.subscriptions: list[Subscription] = (
            list(subscriptions) if subscriptions is not None else [Subscription("", [p.Shape(t) for t in self.tables])]
        )
        self._snapshots: set[str] = set()  # subscriptions whose snapshot has not ended
        self.subscribed = False  # Subscribes sent and not ended by MustResnapshot
        # Schema versions: ours, and from the Welcome the server's; with an
        # older server, the tables and columns it knows (None: all of ours).
        self.synced_schema = synced.SCHEMA_VERSION
        self.server_schema = 0
        self.server_known: versions.Known | None = None

    def __repr__(self) -> str:  # never shows the token
        return (
            f"ClientSession(state={self.state.value}, cursor={self.cursor}, "
            f"acked_seq={self.acked_seq}, pushed_seq={self.pushed_seq}, in_flight={len(self._in_flight)})"
        )

    # --- output -----------------------------------------------------------

    def messages_to_send(self) -> list[p.Message]:
        out, self._outgoing = self._outgoing, []
        return out

    def events_received(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # --- what the driver may ask -------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def can_push(self) -> bool:
        """Whether a Push may be sent now (ready, and the window has room)."""
        return self.state is State.READY and len(self._in_flight) < self.max_in_flight

    @property
    def settled(self) -> bool:
        """Ready, caught up with the server, no push waiting for its Ack, no
        resolution waiting to be confirmed read, and what our pushes added to
        the server's log received back (with the conflict records they made)."""
        if not (
            self.state is State.READY
            and self.subscribed
            and not self._in_flight
            and not self._fetches
            and not self._awaiting_pong
        ):
            return False
        if not self.subscriptions:
            return True  # nothing to follow (an older server knows none of our shapes)
        return self.up_to_date and not self._snapshots and self.cursor >= self.awaited_log_seq

    @property
    def fetching(self) -> int:
        """Fetches sent and not yet answered."""
        return len(self._fetches)

    @property
    def snapshotting(self) -> bool:
        return bool(self._snapshots)

    # --- what the driver does ---------------------------------------------

    def start(self) -> None:
        if self.state is not State.IDLE:
            raise ProtocolError(f"session already started ({self.state.value})", code="state")
        self._outgoing.append(
            p.Hello(
                token=self._token,
                site=self.site,
                schema=self.schema,
                cursor=self.cursor,
                acked_seq=self.acked_seq,
                changes_cursor=True,
                synced_schema=self.synced_schema,
            )
        )
        self.state = State.HELLO_SENT

    def push(self, txs: Sequence[p.LocalTx], *, through: int = 0) -> None:
        """Send local transactions, which must follow the last ones sent.
        ``through``: the push also stands for the sequence numbers after its
        last change up to this one, which carried nothing this server can
        take (they count as acknowledged with it)."""
        if not self.can_push:
            raise ProtocolError(
                f"cannot push now (state {self.state.value}, {len(self._in_flight)} pushes in flight)", code="state"
            )
        if not txs or any(not tx.changes for tx in txs):
            raise ProtocolError("a push carries whole, non-empty transactions", code="state")
        seqs = [c.seq for tx in txs for c in tx.changes]
        if seqs[0] <= self.pushed_seq or any(b <= a for a, b in zip(seqs, seqs[1:])):
            raise ProtocolError(
                f"changes must be pushed in sequence order after {self.pushed_seq}, got {seqs[0]}..{seqs[-1]}",
                code="state",
            )
        self._outgoing.append(p.Push(txs=list(txs)))
        self._in_flight.append((seqs[-1], max(seqs[-1], through)))
        self.pushed_seq = max(seqs[-1], through)

    def skip(self, through: int) -> None:
        """The local changes after the last pushed up to ``through`` carry
        nothing this server can take (the driver keeps them back for a newer
        one): they count as acknowledged once every push before them is."""
        if self.state is not State.READY:
            raise ProtocolError(f"cannot skip changes now ({self.state.value})", code="state")
        if through <= self.pushed_seq:
            return
        self.pushed_seq = through
        if self._in_flight:
            sent, _ = self._in_flight[-1]
            self._in_flight[-1] = (sent, through)
        elif through > self.acked_seq:
            self.acked_seq = through
            self._events.append(Acked(through, [], 0))

    def retract_pushes(self) -> None:
        """The server dropped our pushes after its last Ack (it deferred one of
        them, e.g. stamped ahead of its clock): forget those in flight, so the
        next push starts right after the acknowledged sequence."""
        self._in_flight.clear()
        self.pushed_seq = self.acked_seq

    def resolved(self, conflict_ids: Sequence[str]) -> None:
        """Tell the server these conflict records were resolved here."""
        if self.state is not State.READY:
            raise ProtocolError(f"cannot report resolutions now ({self.state.value})", code="state")
        if conflict_ids:
            # Resolved has no answer of its own. A Ping right behind it does: the
            # server handles one connection's messages in order, so its Pong
            # proves the Resolved was read. Until then it is sent again on the
            # next connection (marking a record resolved twice is harmless).
            self._nonce += 1
            self._awaiting_pong[self._nonce] = list(conflict_ids)
            self._outgoing.append(p.Resolved(conflict_ids=list(conflict_ids)))
            self._outgoing.append(p.Ping(nonce=self._nonce))

    def fetch(self, table: str, ids: Iterable[str]) -> list[str]:
        """Ask for these rows as the server holds them now (a RowsFetched
        event each answer), in Fetches of at most ``MAX_FETCH_IDS`` ids;
        returns the fetches' ids (none for a table an older server lacks)."""
        if self.state is not State.READY:
            raise ProtocolError(f"cannot fetch rows now ({self.state.value})", code="state")
        if table not in self.tables:
            raise ProtocolError(f"{table!r} is not a synced table", code="state")
        if not versions.knows_table(self.server_known, table):
            return []  # an older server: it holds no such rows
        wanted = list(dict.fromkeys(ids))
        if not all(isinstance(i, str) for i in wanted):
            raise ProtocolError("row ids are strings", code="state")
        sent = []
        for start in range(0, len(wanted), p.MAX_FETCH_IDS):
            self._fetch_count += 1
            fetch_id = f"f{self._fetch_count}"
            self._fetches.add(fetch_id)
            self._outgoing.append(p.Fetch(id=fetch_id, table=table, ids=wanted[start : start + p.MAX_FETCH_IDS]))
            sent.append(fetch_id)
        return sent

    def receive(self, message: p.Message) -> None:
        """Take one message from the server. Raises ProtocolError (and the
        session fails) on a message that has no place here."""
        if self.state is State.FAILED:
            raise ProtocolError("the session has failed; start a new one", code="state")
        handler = self._handlers.get(type(message))
        if handler is None:
            self._violation(f"a server never sends {type(message).__name__}", code="unexpected_message")
        handler(self, message)

    # --- handlers ---------------------------------------------------------

    def _violation(self, message: str, *, code: str = "unexpected_message") -> None:
        self.state = State.FAILED
        raise ProtocolError(message, code=code)

    def _require_ready(self, message: p.Message) -> None:
        if self.state is not State.READY:
            self._violation(f"{type(message).__name__} before Welcome")

    def _on_welcome(self, msg: p.Welcome) -> None:
        if self.state is not State.HELLO_SENT:
            self._violation("a second Welcome")
        if msg.protocol != p.PROTOCOL_VERSION:
            self._violation(
                f"the server speaks protocol {msg.protocol}, this client {p.PROTOCOL_VERSION}", code="protocol_version"
            )
        previous = self.acked_seq
        # The server's record is the truth: if it knows less than we believed
        # (a restored database), the changes after it are sent again; the
        # server applies each (site, seq) at most once, so nothing doubles.
        self.acked_seq = msg.acked_seq
        self.pushed_seq = msg.acked_seq
        self.tenant = msg.tenant
        self.max_frame = msg.max_frame
        if msg.max_batch > 0:
            self.max_batch = min(self.max_batch, msg.max_batch)
        self.server_schema = synced.peer_version(msg.synced_schema)
        self.server_known = versions.known(min(self.server_schema, self.synced_schema))
        self.state = State.READY
        self._events.append(
            Welcomed(
                msg.tenant,
                msg.acked_seq,
                previous,
                msg.server_id,
                server_time_ms=msg.server_time_ms,
                max_drift_ms=msg.max_drift_ms,
                server_schema=self.server_schema,
                acked_fingerprint=msg.acked_fingerprint,
            )
        )
        self.subscribe(self.subscriptions)

    def subscribe(self, subscriptions: Sequence[Subscription]) -> None:
        """Send these subscriptions (on Welcome, and after a Resnapshot)."""
        if self.state is not State.READY:
            raise ProtocolError(f"cannot subscribe now ({self.state.value})", code="state")
        if self.server_known is not None:
            # An older server: the shapes of tables (or filters on columns) it
            # does not know wait for a newer one.
            subscriptions = [
                sub._replace(shapes=shapes)
                for sub in subscriptions
                if (shapes := [s for s in sub.shapes if versions.knows_shape(self.server_known, s)])
            ]
        self.subscriptions = list(subscriptions)
        self._live = any(not sub.snapshot for sub in self.subscriptions)  # a shape follows the log from the cursor
        self._streaming = False  # the server's stream has started for these subscriptions
        self.up_to_date = False
        self.subscribed = True
        for sub in self.subscriptions:
            cursor = self.cursor if sub.cursor is None else sub.cursor
            if sub.snapshot:
                self._snapshots.add(sub.id)
            self._outgoing.append(
                p.Subscribe(
                    shapes=list(sub.shapes),
                    cursor=cursor,
                    id=sub.id,
                    snapshot=sub.snapshot,
                    resume=sub.resume,
                    columnar=sub.snapshot,  # this client reads Snapshot.columns
                )
            )

    def _on_ack(self, msg: p.Ack) -> None:
        self._require_ready(msg)
        # An Ack may reach past what this session sent: another connection of
        # the same replica (a second process) may have pushed the rest.
        self.pushed_seq = max(self.pushed_seq, msg.upto_seq)
        self.awaited_log_seq = max(self.awaited_log_seq, msg.log_seq)
        reach = msg.upto_seq
        while self._in_flight and self._in_flight[0][0] <= msg.upto_seq:
            reach = max(reach, self._in_flight.popleft()[1])
        if reach > self.acked_seq or msg.rejected:
            self.acked_seq = max(self.acked_seq, reach)
            merged = None if reach == msg.upto_seq else msg.upto_seq
            self._events.append(Acked(self.acked_seq, list(msg.rejected), merged))

    def _on_changes(self, msg: p.Changes) -> None:
        self._require_ready(msg)
        for tx in msg.txs:
            # Every transaction is handed on, even one at or below the cursor:
            # the merge is idempotent and commutative, so a duplicate or late
            # delivery is harmless, while skipping one could lose a change.
            self._events.append(RemoteTx(tx))
            self.cursor = max(self.cursor, tx.seq)
        self._streaming = True
        if msg.cursor:
            # An UpToDate folded into the frame (servers that do not fold send it apart).
            self._on_up_to_date(p.UpToDate(cursor=msg.cursor))

    def _on_up_to_date(self, msg: p.UpToDate) -> None:
        self._require_ready(msg)
        self.cursor = max(self.cursor, msg.cursor)
        self.up_to_date = True
        self._streaming = True
        self._events.append(UpToDate(self.cursor))

    def _on_must_resnapshot(self, msg: p.MustResnapshot) -> None:
        self._require_ready(msg)
        self.subscribed = False
        self.up_to_date = False
        self._snapshots.clear()
        self._events.append(Resnapshot(msg.oldest))

    def _on_snapshot(self, msg: p.Snapshot) -> None:
        self._require_ready(msg)
        if msg.id not in self._snapshots:
            self._violation(f"a Snapshot for {msg.id!r}, which asked for none", code="unexpected_message")
        if msg.last:
            self._snapshots.discard(msg.id)
            if self._streaming:
                pass  # the stream served this shape since before its snapshot's position
            elif self._live:
                # Each shape's snapshot is consistent with its own position (a
                # merge may land between two): the stream starts from the
                # oldest, and the cursor must not claim more than it.
                self.cursor = min(self.cursor, msg.position)
            else:
                self.cursor = msg.position  # the first shape live on a fresh replica
            self._live = True
        self._events.append(
            SnapshotChunk(
                msg.id, list(msg.rows), msg.position, msg.last, msg.resume, list(msg.conflicts), msg.columns, self.cursor
            )
        )

    def _on_rows(self, msg: p.Rows) -> None:
        self._require_ready(msg)
        if msg.id not in self._fetches:
            self._violation(f"Rows for {msg.id!r}, which was not fetched", code="unexpected_message")
        self._fetches.discard(msg.id)
        self._events.append(RowsFetched(list(msg.rows), msg.id))

    def _on_error(self, msg: p.Error) -> None:
        if msg.code == "bad_fetch":
            # A refused Fetch is never answered (the Error does not say which):
            # settling must not wait for any of them.
            self._fetches.clear()
        if msg.fatal:
            self.state = State.FAILED
        self._events.append(SessionError(msg.code, msg.message, msg.fatal, msg.retry_after_ms))

    def _on_ping(self, msg: p.Ping) -> None:
        self._outgoing.append(p.Pong(nonce=msg.nonce))

    def _on_pong(self, msg: p.Pong) -> None:
        delivered = self._awaiting_pong.pop(msg.nonce, None)
        if delivered is not None:
            self._events.append(ResolutionsDelivered(delivered))

    _handlers: dict[type, Any] = {
        p.Welcome: _on_welcome,
        p.Ack: _on_ack,
        p.Changes: _on_changes,
        p.UpToDate: _on_up_to_date,
        p.MustResnapshot: _on_must_resnapshot,
        p.Snapshot: _on_snapshot,
        p.Rows: _on_rows,
        p.Error: _on_error,
        p.Ping: _on_ping,
        p.Pong: _on_pong,
    }
