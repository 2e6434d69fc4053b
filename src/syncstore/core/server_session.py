"""The server's half of a sync session: a state machine with no I/O.

A driver owns the websocket, the token check and the database; this class owns
the protocol: which message is allowed when, what each one asks the driver to
do, and what to answer. It has the shape of websockets' sans-I/O ``Protocol``:
feed a frame with :meth:`ServerSession.receive_frame` (or a decoded message
with :meth:`ServerSession.receive`), then take the work with
:meth:`ServerSession.actions`. The driver reports back what it did
(:meth:`accept`, :meth:`refuse`, :meth:`merged`, :meth:`log_read`, ...), which
may queue more actions.

States::

    AWAIT_HELLO --Hello--> AUTHENTICATING --accept()--> READY
    AUTHENTICATING --refuse()--> CLOSED
    any --fatal error (bad Hello, expired token, ...)--> CLOSED

Actions for the driver, in the order they are queued:

- :class:`Send`: send this message. :class:`SendEncoded`: send these frames
  (a live delivery, encoded once for every stream it reaches).
- :class:`Authenticate`: check the token; then :meth:`accept` or :meth:`refuse`.
- :class:`Merge`: merge these local transactions of the session's site, each
  atomically and at most once; then :meth:`merged` (or :meth:`merge_failed`).
  At most one merge is asked for at a time, in the order the pushes came.
- :class:`ReadLog`: read the tenant's log after a position; then
  :meth:`log_read`. At most one read is asked for at a time.
- :class:`ReadSnapshot`: read one chunk of a shape's current rows (keyset
  pagination by id); then :meth:`snapshot_read`. At most one at a time.
- :class:`FetchRows`: read these rows of the tenant, whole (deleted ones as
  tombstones, absent ids left out); then :meth:`rows_read`. Fetches may run
  side by side; each is answered with the Rows of its id.
- :class:`Live`: the stream reached the end of the log: from now on the
  driver routes new entries matching these shapes to :meth:`deliver`
  (``shapes`` None: stop routing, the stream reads the log again).
- :class:`Resolve`: mark these conflict records of the tenant resolved; then
  :meth:`resolve_done`. A Ping behind a Resolved is answered only once it is
  recorded (the client takes the Pong as proof).
- :class:`Close`: close the connection with this code and reason.

The stream: a Subscribe adds shapes to one stream of the tenant's log per
connection. The stream reads the log from a position (:class:`ReadLog`, each
read ending in Changes if anything matched and, at the end of the log,
UpToDate), keeping of each entry what the shapes select
(:func:`syncstore.core.shapes.select`). A driver that can route (its reads
say where the end of the log is) then takes the stream live: new entries
arrive through :meth:`deliver`, already selected. A driver that cannot
(tests' reference servers) calls :meth:`notify` after each commit, which asks
for another read, so live changes follow with no polling either way.

Snapshots: a Subscribe with ``snapshot`` queues a snapshot of its shapes'
current rows, sent in chunks before anything else of those shapes is owed.
While no stream runs yet (a fresh replica), the stream starts once every
queued snapshot is sent, from the smallest position asked for: the
Subscribe's cursor when it gives one, else the snapshot's own position (the
log position its first chunk is consistent with). Chunks after the first may
be read later, from newer data: every change after the position still comes
through the stream and merges to the same rows.

Compaction: a read that finds the stream's position older than the oldest
position the log keeps answers MustResnapshot and ends every subscription.

Schema versions: the Welcome says which version of the synced tables this
server knows. A client of an older version (its Hello says which) is sent
only the tables and columns of its version, in every message that carries
rows (:func:`syncstore.core.versions.narrow`), and may subscribe to and fetch
only those tables; the driver passes its version to the merge, which fills
the newer columns of its inserts with their defaults.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Callable, Iterable, NamedTuple, Sequence, Union

from syncstore import schema as synced  # (``schema`` is also a parameter below)
from syncstore.core import protocol as p
from syncstore.core import shapes as sh
from syncstore.core import versions
from syncstore.core.hlc import wall_ms
from syncstore.errors import ProtocolError

SITE_BYTES = 16
DEFAULT_MAX_BATCH = 5_000  # changes in one Push of several transactions
MAX_RESOLVED_IDS = 1_000  # conflict ids in one Resolved message
MAX_INT64 = (1 << 63) - 1  # sequences, transaction numbers and cursors are stored as bigint

# Close codes (RFC 6455 section 7.4.1).
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008  # authentication failures

# What each message needs of the token's scopes ("admin" may do everything).
PUSH_SCOPES = frozenset({"sync", "admin"})
READ_SCOPES = frozenset({"sync", "read", "admin"})


class State(enum.Enum):
    AWAIT_HELLO = "await_hello"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    CLOSED = "closed"


# --- actions ------------------------------------------------------------------


class Send(NamedTuple):
    message: p.Message


class SendEncoded(NamedTuple):
    """Send these frames, already encoded (a live delivery shared by many streams)."""

    frames: tuple[bytes, ...]


class Authenticate(NamedTuple):
    token: str
    site: bytes
    cursor: int  # what the client says it has applied (for the driver's logs)
    client_acked: int  # what the client believes was merged


class Merge(NamedTuple):
    txs: list[p.LocalTx]
    last_seq: int  # the highest sequence in the push: the Ack covers it


class ReadLog(NamedTuple):
    after: int


class ReadSnapshot(NamedTuple):
    shape: sh.ShapeFilter
    after_id: str  # keyset: rows with an id greater than this ("" for the first chunk)
    position: bool  # also read the log position the chunk is consistent with


class SnapshotRows:
    """One chunk of a shape as the store read it: the rows by id (those whose
    cells share one clock per row may be in ``columns``, the others in
    ``rows``), the conflict records of the rows in the chunk's id range, and
    the id the next chunk starts after."""

    __slots__ = ("rows", "conflicts", "last_id", "columns")

    def __init__(
        self,
        rows: list[p.RowChange],
        conflicts: list[p.ConflictRecord],
        last_id: str,
        columns: p.Columns | None = None,
    ):
        self.rows = rows
        self.conflicts = conflicts
        self.last_id = last_id
        self.columns = columns

    def __len__(self) -> int:
        return len(self.rows) + (len(self.columns.ids) if self.columns is not None else 0)

    def row_changes(self) -> list[p.RowChange]:
        """Every row as a RowChange, by id (for a client that does not read columns)."""
        if self.columns is None or not self.columns.ids:
            return self.rows
        return sorted([*self.rows, *self.columns.row_changes()], key=_row_id)


def _row_id(row: p.RowChange) -> str:
    return row.id


class FetchRows(NamedTuple):
    id: str  # the client's name for the fetch, echoed in Rows
    table: str
    ids: list[str]


class Live(NamedTuple):
    shapes: list[sh.ShapeFilter] | None  # None: stop routing to this session
    position: int  # entries after this one are owed


class Resolve(NamedTuple):
    conflict_ids: list[str]


class Close(NamedTuple):
    code: int
    reason: str


Action = Union[Send, SendEncoded, Authenticate, Merge, ReadLog, ReadSnapshot, FetchRows, Live, Resolve, Close]


def encode_changes(txs: list[p.ServerTx], *, cursor: int = 0, max_frame: int = 0) -> list[bytes]:
    """Changes frames for ``txs``, each within ``max_frame`` bytes (0: no
    limit) unless it holds a single transaction (one is never split); only the
    last frame carries ``cursor``."""
    frame = p.encode(p.Changes(txs=txs, cursor=cursor))
    if max_frame <= 0 or len(frame) <= max_frame or len(txs) < 2:
        return [frame]
    half = len(txs) // 2
    return encode_changes(txs[:half], max_frame=max_frame) + encode_changes(txs[half:], cursor=cursor, max_frame=max_frame)


class Delivery(list):  # type: ignore[type-arg]
    """New log entries ``(seq, selected tx)`` for every live stream whose
    shapes select the same parts of them. The driver's router hands one
    Delivery to all of those streams, so its frames are built and encoded once
    per commit, not once per stream."""

    __slots__ = ("_frames",)

    def __init__(self, entries: Iterable[tuple[int, p.ServerTx]] = ()):
        super().__init__(entries)
        self._frames: dict[tuple[bool, int, int | None], tuple[bytes, ...]] = {}

    def frames(self, *, folded: bool, max_frame: int, known: versions.Known | None = None) -> tuple[bytes, ...]:
        """The Changes frames, ending with the cursor (``folded``) or followed
        by an UpToDate; for a client of an older schema version, only what
        ``known`` holds."""
        key = (folded, max_frame, None if known is None else id(known))
        found = self._frames.get(key)
        if found is None:
            txs = [tx for _, tx in self] if known is None else [versions.narrow_tx(tx, known) for _, tx in self]
            cursor = self[-1][0]
            if folded:
                found = tuple(encode_changes(txs, cursor=cursor, max_frame=max_frame))
            else:
                found = (*encode_changes(txs, max_frame=max_frame), p.encode(p.UpToDate(cursor=cursor)))
            self._frames[key] = found
        return found


class _Job:
    """A snapshot in progress: the shapes of one Subscribe, shape by shape, by id."""

    __slots__ = ("id", "shapes", "index", "after", "position", "cursor", "columnar", "replaced")

    def __init__(
        self, sub_id: str, shapes: list[sh.ShapeFilter], index: int, after: str, cursor: int, columnar: bool = False
    ):
        self.id = sub_id
        self.shapes = shapes
        self.index = index
        self.after = after
        self.position: int | None = cursor or None
        self.cursor = cursor
        self.columnar = columnar  # the client reads Snapshot.columns
        self.replaced = False  # a later Subscribe of the same id took its place


def resume_key(index: int, after_id: str) -> str:
    return f"{index}:{after_id}"


def parse_resume(key: str, shapes: int) -> tuple[int, str]:
    index, sep, after = key.partition(":")
    if not sep or not index.isdigit() or int(index) >= shapes or len(after) > 200:
        raise ProtocolError("not a resume key this server made", code="bad_subscribe")
    return int(index), after


def _fetch_problem(msg: p.Fetch, tables: frozenset[str]) -> str:
    """What is wrong with a Fetch ("" if nothing)."""
    if msg.table not in tables:
        return f"{msg.table!r} is not a synced table"
    if len(msg.ids) > p.MAX_FETCH_IDS:
        return f"at most {p.MAX_FETCH_IDS} ids in one Fetch, got {len(msg.ids)}"
    if not all(isinstance(i, str) for i in msg.ids):
        return "row ids are strings"
    return ""


class Identity(NamedTuple):
    """Who the token says the peer is."""

    tenant: str
    scopes: frozenset[str]
    expires_at_ms: int | None  # None: the token does not expire


# --- the session --------------------------------------------------------------


class ServerSession:
    """One connection's worth of the server protocol.

    ``now_ms`` is injectable so tests control time (token expiry is checked on
    every message). ``tables`` names what may be subscribed (the synced tables).
    """

    def __init__(
        self,
        *,
        tables: Iterable[str],
        max_batch: int = DEFAULT_MAX_BATCH,
        max_frame: int = 0,
        server_id: str = "",
        schema: int = 0,
        now_ms: Callable[[], int] = wall_ms,
        max_drift_ms: int = 0,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.tables = frozenset(tables)
        self.max_batch = max_batch
        self.max_frame = max_frame
        self.server_id = server_id
        self.schema = schema
        self.max_drift_ms = max_drift_ms  # told the client in Welcome (0: not told)
        self._now_ms = now_ms
        # A push deferred from this sequence on (merge_deferred): later pushes
        # the client sent before it heard are dropped until it pushes from here again.
        self._deferred_from: int | None = None
        self.state = State.AWAIT_HELLO
        self.site: bytes | None = None
        self.identity: Identity | None = None
        self.acked_seq = 0
        self._actions: list[Action] = []
        self._pushes: deque[Merge] = deque()
        self._merging = False
        # The stream: subscription id -> shapes; the position delivered up to.
        self._subscriptions: dict[str, list[sh.ShapeFilter]] = {}
        self._selection: dict[str, list[sh.ShapeFilter]] = {}  # by table, every subscription's
        self.position = 0
        self.started = False  # the stream runs (else: it waits for snapshots, or nothing is subscribed)
        self.live = False  # the driver routes new entries to deliver()
        self._start_from: int | None = None  # where the stream will start
        self._reading = False
        self._wake = False
        self._stale = False
        self._draining = False
        self._resolving = 0  # Resolve actions not yet done
        self._held_pongs: list[int] = []  # Pings that came behind them
        self._fetches: set[str] = set()  # FetchRows asked for and not yet read
        self._jobs: deque[_Job] = deque()
        self._job: _Job | None = None  # the snapshot whose chunk is being read
        self.changes_cursor = False  # the client reads Changes.cursor (its Hello said so)
        # Schema versions: ours, the client's (from its Hello), and, for an
        # older client, the tables and columns it knows (what it is sent).
        self.synced_schema = synced.SCHEMA_VERSION
        self.client_schema = 0
        self._known: versions.Known | None = None
        self._client_tables = self.tables

    def __repr__(self) -> str:  # never shows the token
        tenant = self.identity.tenant if self.identity else None
        return (
            f"ServerSession(state={self.state.value}, tenant={tenant!r}, acked_seq={self.acked_seq}, "
            f"position={self.position}, merging={self._merging}, queued={len(self._pushes)})"
        )

    # --- output -----------------------------------------------------------

    def actions(self) -> list[Action]:
        """The work queued since the last call, in order."""
        out, self._actions = self._actions, []
        return out

    @property
    def tenant(self) -> str | None:
        return self.identity.tenant if self.identity else None

    @property
    def subscribed_tables(self) -> frozenset[str]:
        return frozenset(self._selection)

    @property
    def shapes(self) -> list[sh.ShapeFilter]:
        return [shape for shapes in self._selection.values() for shape in shapes]

    @property
    def snapshotting(self) -> bool:
        return self._job is not None or bool(self._jobs)

    @property
    def busy(self) -> bool:
        """A merge is running or queued (a draining server waits for these)."""
        return self._merging or bool(self._pushes)

    # --- input: frames and messages ----------------------------------------

    def receive_frame(self, frame: bytes) -> None:
        """Decode one frame and handle it. A frame that does not decode is
        answered with an Error; before Hello it also ends the session."""
        if self.state is State.CLOSED or self._draining:
            return
        try:
            message = p.decode(frame)
        except ProtocolError as exc:
            self._error(exc.code, str(exc), fatal=self.state is not State.READY)
            return
        self.receive(message)

    def receive(self, message: p.Message) -> None:
        if self.state is State.CLOSED or self._draining:
            return
        handler = self._handlers.get(type(message))
        if handler is None:
            self._error("unexpected_message", f"a client never sends {type(message).__name__}", fatal=False)
            return
        if self.state is State.AWAIT_HELLO and not isinstance(message, p.Hello):
            self._error("unexpected_message", f"expected Hello, got {type(message).__name__}", fatal=True)
            return
        if self.state is State.AUTHENTICATING:
            self._error("unexpected_message", f"{type(message).__name__} before Welcome", fatal=True)
            return
        if self.state is State.READY and not self._token_valid():
            return
        handler(self, message)

    # --- input: what the driver did -----------------------------------------

    def accept(self, identity: Identity, *, acked_seq: int, acked_fingerprint: bytes = b"") -> None:
        """The token is good; ``acked_seq`` is the server's record for this site
        (and ``acked_fingerprint`` that of its change there)."""
        if self.state is not State.AUTHENTICATING:
            raise ProtocolError(f"accept() in state {self.state.value}", code="state")
        self.identity = identity
        self.acked_seq = acked_seq
        self.state = State.READY
        if not self._token_valid():
            return
        self._send(
            p.Welcome(
                tenant=identity.tenant,
                acked_seq=acked_seq,
                schema=self.schema,
                server_id=self.server_id,
                server_time_ms=self._now_ms(),
                max_batch=self.max_batch,
                max_frame=self.max_frame,
                max_drift_ms=self.max_drift_ms,
                synced_schema=self.synced_schema,
                acked_fingerprint=acked_fingerprint,
            )
        )

    def refuse(self, code: str, message: str) -> None:
        """The token is missing, expired or forged: say so and close."""
        if self.state is not State.AUTHENTICATING:
            raise ProtocolError(f"refuse() in state {self.state.value}", code="state")
        self._error(code, message, fatal=True, close_code=CLOSE_POLICY_VIOLATION)

    def merged(self, *, upto_seq: int, rejected: Sequence[p.Rejection] = (), log_seq: int = 0) -> None:
        """The merge asked for last is durable up to ``upto_seq``; ``log_seq`` is
        the log position of the last entry it added (0: none)."""
        if not self._merging:
            raise ProtocolError("merged() with no merge running", code="state")
        self._merging = False
        self.acked_seq = max(self.acked_seq, upto_seq)
        if self.state is State.CLOSED:
            return
        self._send(p.Ack(upto_seq=self.acked_seq, rejected=list(rejected), log_seq=log_seq))
        if log_seq > self.position and self.started and not self._draining and any(not s.whole for s in self.shapes):
            # The client settles once its cursor passes what its push added, but
            # a filtered stream is sent only the entries its shapes select: read
            # to the end of the log, whose UpToDate passes that entry either way.
            self._leave_live()
            self._read_or_wake()
        self._next_merge()

    def merge_deferred(
        self,
        *,
        upto_seq: int,
        first_seq: int,
        code: str,
        message: str,
        retry_after_ms: int = 0,
        rejected: Sequence[p.Rejection] = (),
        log_seq: int = 0,
    ) -> None:
        """The merge asked for last stopped at a transaction that may merge
        later (its first change ``first_seq``): Ack what came before, say why
        with a non-fatal Error, and drop the pushes that follow it, queued or
        still on their way, until the client pushes from ``first_seq`` again."""
        if not self._merging:
            raise ProtocolError("merge_deferred() with no merge running", code="state")
        self._pushes.clear()
        self._deferred_from = first_seq
        self.merged(upto_seq=upto_seq, rejected=rejected, log_seq=log_seq)
        if self.state is not State.CLOSED:
            self._send(p.Error(code=code, message=message, fatal=False, retry_after_ms=retry_after_ms))

    def merge_failed(self, code: str, message: str) -> None:
        """The merge could not run (the database is away): nothing was merged.
        Later pushes are dropped too (they would arrive out of order); the
        client pushes again after reconnecting."""
        if not self._merging:
            raise ProtocolError("merge_failed() with no merge running", code="state")
        self._merging = False
        self._pushes.clear()
        self._error(code, message, fatal=True, close_code=1011)

    def log_read(
        self,
        entries: Sequence[tuple[int, p.ServerTx] | sh.LogEntry],
        *,
        more: bool,
        oldest: int = 0,
        head: int | None = None,
    ) -> None:
        """The log entries after the position asked for, oldest first, and
        whether the read stopped at its limit (``more``) before the end.
        ``oldest``: the oldest position the log still serves (a position
        before it must re-snapshot). ``head``: when the read reached the end,
        the position it is complete up to, from which the driver routes new
        entries (None: this driver does not route; notify() drives the stream)."""
        if not self._reading:
            raise ProtocolError("log_read() with no read running", code="state")
        self._reading = False
        if self.state is not State.READY or not self.started:
            return
        if self._stale:
            self._stale = False
            entries, more = [], True  # read again from the rewound position
        if self.position < oldest:
            self._must_resnapshot(oldest)
            return
        out: list[p.ServerTx] = []
        selection = self._selection
        for entry in entries:
            seq = entry[0]
            if seq <= self.position:
                continue  # the stream was rewound or read twice; never go back
            kept = sh.select(entry if isinstance(entry, sh.LogEntry) else sh.LogEntry(seq, entry[1]), selection)
            if kept is not None:
                out.append(kept)
            self.position = seq
        if out:
            self._send(p.Changes(txs=out))
        if (more or self._wake) and not self._draining:
            self._wake = False
            self._read()
            return
        if head is not None:
            self.position = max(self.position, head)
        self._send(p.UpToDate(cursor=self.position))
        if head is not None and not self._draining:
            self.live = True
            self._actions.append(Live(self.shapes, self.position))

    def deliver(self, entries: Sequence[tuple[int, p.ServerTx]]) -> None:
        """Live: new log entries the driver selected for this session's shapes.
        Each delivery ends up to date at its last entry: one Changes carrying
        the cursor for a client that reads it, else Changes then UpToDate."""
        if self.state is not State.READY or not self.live or not entries:
            return
        if isinstance(entries, Delivery) and entries[0][0] > self.position:
            # All of it is new to this stream (the usual case): the frames the
            # other streams of these shapes get are exactly ours.
            self.position = entries[-1][0]
            frames = entries.frames(folded=self.changes_cursor, max_frame=self.max_frame, known=self._known)
            self._actions.append(SendEncoded(frames))
            return
        out = [tx for seq, tx in entries if seq > self.position]
        if not out:
            return
        self.position = out[-1].seq
        if self.changes_cursor:
            self._send(p.Changes(txs=out, cursor=self.position))
        else:
            self._send(p.Changes(txs=out))
            self._send(p.UpToDate(cursor=self.position))

    def snapshot_read(
        self, rows: Sequence[p.RowChange] | SnapshotRows, *, position: int | None, exhausted: bool
    ) -> None:
        """One chunk of the snapshot asked for: rows by id (with the conflict
        records of their id range), the position the first chunk is consistent
        with, and whether the shape has no more rows."""
        chunk = rows if isinstance(rows, SnapshotRows) else SnapshotRows(list(rows), [], rows[-1].id if rows else "")
        job = self._job
        if job is None:
            raise ProtocolError("snapshot_read() with no snapshot read running", code="state")
        self._job = None
        if self.state is not State.READY or job.id not in self._subscriptions or job.replaced:
            self._next_snapshot()
            return
        if job.position is None:
            job.position = position or 0
        if exhausted:
            job.index += 1
            job.after = ""
        elif chunk.last_id:
            job.after = chunk.last_id
        last = job.index >= len(job.shapes)
        if len(chunk) or chunk.conflicts or last:
            columns = chunk.columns if job.columnar and chunk.columns is not None and chunk.columns.ids else None
            self._send(
                p.Snapshot(
                    rows=chunk.rows if columns is not None else chunk.row_changes(),
                    position=job.position,
                    last=last,
                    resume="" if last else resume_key(job.index, job.after),
                    id=job.id,
                    conflicts=chunk.conflicts,
                    columns=columns,
                )
            )
        if last:
            if not self.started:
                start = job.cursor or job.position
                self._start_from = start if self._start_from is None else min(self._start_from, start)
        else:
            self._jobs.appendleft(job)
        self._next_snapshot()

    def rows_read(self, fetch_id: str, rows: Sequence[p.RowChange]) -> None:
        """The rows a FetchRows asked for, as the store holds them now."""
        if fetch_id not in self._fetches:
            raise ProtocolError(f"rows_read() for {fetch_id!r}, which is not being fetched", code="state")
        self._fetches.discard(fetch_id)
        if self.state is State.READY:
            self._send(p.Rows(id=fetch_id, rows=list(rows)))

    def fetch_failed(self, code: str, message: str) -> None:
        """The rows could not be read: end the session (the client fetches again)."""
        self._fetches.clear()
        self._error(code, message, fatal=True, close_code=1011)

    def snapshot_failed(self, code: str, message: str) -> None:
        """The chunk could not be read: end the session (the client resumes)."""
        self._job = None
        self._error(code, message, fatal=True, close_code=1011)

    def log_failed(self, code: str, message: str) -> None:
        """The read could not run: end the session (the client resumes from its cursor)."""
        self._reading = False
        self._error(code, message, fatal=True, close_code=1011)

    def notify(self) -> None:
        """Something was committed to this tenant's log (drivers that do not route)."""
        if self.state is not State.READY or not self.started or self.live or self._draining:
            return
        if self._reading:
            self._wake = True
        else:
            self._read()

    def resolve_done(self, *, ok: bool) -> None:
        """A Resolve is recorded (``ok``) or could not be. A Pong proves to the
        client that every Resolved sent before its Ping is recorded, so Pings
        wait for the Resolves before them; after a failure those Pings get no
        Pong (the client reports the resolutions again on its next connection)."""
        if self._resolving == 0:
            raise ProtocolError("resolve_done() with no Resolve running", code="state")
        self._resolving -= 1
        if self.state is State.CLOSED:
            return
        if not ok:
            self._held_pongs.clear()
            self._error("unavailable", "the server could not record the resolution; send it again", fatal=False)
        if not self._resolving:
            for nonce in self._held_pongs:
                self._send(p.Pong(nonce=nonce))
            self._held_pongs.clear()

    def ping(self, nonce: int) -> None:
        """Ask the client for a sign of life (the driver's idle check)."""
        if self.state is State.READY:
            self._send(p.Ping(nonce=nonce))

    def drain(self) -> None:
        """The server is closing the connection: take no more input, start no
        more merges (queued pushes were never acked; the client sends them
        again), but still answer the merge in flight with its Ack."""
        self._draining = True
        self._pushes.clear()

    def close(self) -> None:
        """The connection is gone or being closed by the server: stop asking for work."""
        self.state = State.CLOSED
        self._pushes.clear()
        self._jobs.clear()
        self.live = False

    # --- handlers ---------------------------------------------------------

    def _on_hello(self, msg: p.Hello) -> None:
        if self.state is not State.AWAIT_HELLO:
            self._error("unexpected_message", "a second Hello", fatal=False)
            return
        if msg.protocol != p.PROTOCOL_VERSION:
            self._error(
                "protocol_version",
                f"this server speaks protocol {p.PROTOCOL_VERSION}, the client {msg.protocol}",
                fatal=True,
            )
            return
        if len(msg.site) != SITE_BYTES:
            self._error("bad_site", f"a site id is {SITE_BYTES} bytes, got {len(msg.site)}", fatal=True)
            return
        if not msg.token:
            self._error("auth_required", "no token: connect with a token minted for your tenant", fatal=True,
                        close_code=CLOSE_POLICY_VIOLATION)
            return
        self.site = bytes(msg.site)
        self.changes_cursor = msg.changes_cursor
        self.client_schema = synced.peer_version(msg.synced_schema)
        self._known = versions.known(self.client_schema)
        if self._known is not None:
            self._client_tables = self.tables & self._known.keys()
        self.state = State.AUTHENTICATING
        self._actions.append(Authenticate(msg.token, self.site, msg.cursor, msg.acked_seq))

    def _on_push(self, msg: p.Push) -> None:
        if not self._allowed(PUSH_SCOPES, "push"):
            return
        if not msg.txs:
            self._error("bad_push", "a Push carries at least one transaction", fatal=False)
            return
        seqs = []
        for tx in msg.txs:
            if not tx.changes:
                self._error("bad_push", f"transaction {tx.tx} has no changes", fatal=False)
                return
            if not 0 <= tx.tx <= MAX_INT64:
                self._error("bad_push", f"transaction number {tx.tx} is out of range", fatal=False)
                return
            seqs.extend(change.seq for change in tx.changes)
        if any(b <= a for a, b in zip(seqs, seqs[1:])) or seqs[0] < 1 or seqs[-1] > MAX_INT64:
            self._error("bad_push", "changes must come in increasing sequence order, from 1", fatal=False)
            return
        if self._deferred_from is not None:
            if seqs[0] > self._deferred_from:
                return  # sent before the client heard of the deferral: it pushes again from there
            self._deferred_from = None
        if len(msg.txs) > 1 and len(seqs) > self.max_batch:
            # One transaction larger than the limit may come alone (it is never
            # split); several together must fit.
            self._error(
                "batch_too_large",
                f"a Push of several transactions carries at most {self.max_batch} changes, got {len(seqs)}",
                fatal=False,
            )
            return
        self._pushes.append(Merge(list(msg.txs), seqs[-1]))
        self._next_merge()

    def _on_subscribe(self, msg: p.Subscribe) -> None:
        if not self._allowed(READ_SCOPES, "subscribe"):
            return
        if not 0 <= msg.cursor <= MAX_INT64:
            self._error("bad_subscribe", "the cursor is a log position: 0 or more, within 64 bits", fatal=False)
            return
        if not msg.shapes:
            self._error("bad_subscribe", "a Subscribe names at least one table", fatal=False)
            return
        if len(msg.shapes) > sh.MAX_SHAPES:
            self._error("bad_subscribe", f"at most {sh.MAX_SHAPES} shapes in one Subscribe", fatal=False)
            return
        try:
            filters = [sh.check_shape(shape, self._client_tables) for shape in msg.shapes]
            start = (0, "")
            if msg.resume:
                if not msg.snapshot:
                    raise ProtocolError("resume continues a snapshot: set snapshot", code="bad_subscribe")
                start = parse_resume(msg.resume, len(filters))
        except ProtocolError as exc:
            self._error(exc.code, str(exc), fatal=False)
            return
        self._subscriptions[msg.id] = filters
        self._selection = sh.by_table(s for shapes in self._subscriptions.values() for s in shapes)
        if self._job is not None and self._job.id == msg.id:
            # Its chunk being read is not sent: the client counts the
            # subscription's snapshot from this Subscribe on, and a last
            # chunk of the old one would end it before the new one comes.
            self._job.replaced = True
        if msg.snapshot:
            self._jobs = deque(job for job in self._jobs if job.id != msg.id)
            self._jobs.append(_Job(msg.id, filters, start[0], start[1], msg.cursor, msg.columnar))
        if not self.started:
            if not msg.snapshot:
                self._start_from = msg.cursor if self._start_from is None else min(self._start_from, msg.cursor)
            elif msg.cursor:
                self._start_from = msg.cursor if self._start_from is None else min(self._start_from, msg.cursor)
        elif not msg.snapshot or msg.cursor:
            # One stream serves every subscription: a cursor behind the stream
            # rewinds it (what is sent again merges to nothing on the client).
            if msg.cursor < self.position:
                self.position = msg.cursor
                self._leave_live()
                if self._reading:
                    self._stale = True  # the read in flight started after the new position
                self._read_or_wake()
        if self.started and self.live:
            self._actions.append(Live(self.shapes, self.position))
            self._send(p.UpToDate(cursor=self.position))  # the new shapes are served from here
        self._next_snapshot()

    def _on_unsubscribe(self, msg: p.Unsubscribe) -> None:
        if self._subscriptions.pop(msg.id, None) is None:
            return
        self._selection = sh.by_table(s for shapes in self._subscriptions.values() for s in shapes)
        self._jobs = deque(job for job in self._jobs if job.id != msg.id)
        if self.live:
            self._actions.append(Live(self.shapes if self._subscriptions else None, self.position))
            if not self._subscriptions:
                self.live = False

    def _on_resolved(self, msg: p.Resolved) -> None:
        if not self._allowed(PUSH_SCOPES, "resolve conflicts"):
            return
        if len(msg.conflict_ids) > MAX_RESOLVED_IDS:
            self._error("bad_resolved", f"at most {MAX_RESOLVED_IDS} conflict ids at once", fatal=False)
            return
        if msg.conflict_ids:
            self._resolving += 1
            self._actions.append(Resolve(list(msg.conflict_ids)))

    def _on_fetch(self, msg: p.Fetch) -> None:
        if not self._allowed(READ_SCOPES, "fetch rows"):
            return
        problem = _fetch_problem(msg, self._client_tables)
        if problem:
            self._error("bad_fetch", problem, fatal=False)
            return
        if msg.id in self._fetches:
            self._error("bad_fetch", f"fetch {msg.id!r} is still being read: name each fetch apart", fatal=False)
            return
        self._fetches.add(msg.id)
        self._actions.append(FetchRows(msg.id, msg.table, list(dict.fromkeys(msg.ids))))

    def _on_ping(self, msg: p.Ping) -> None:
        if self._resolving:
            self._held_pongs.append(msg.nonce)  # answered once what came before is recorded
        else:
            self._send(p.Pong(nonce=msg.nonce))

    def _on_pong(self, msg: p.Pong) -> None:
        pass  # any message is a sign of life; the driver notes the time

    _handlers: dict[type, Callable[[ServerSession, p.Message], None]] = {
        p.Hello: _on_hello,
        p.Push: _on_push,
        p.Subscribe: _on_subscribe,
        p.Unsubscribe: _on_unsubscribe,
        p.Resolved: _on_resolved,
        p.Fetch: _on_fetch,
        p.Ping: _on_ping,
        p.Pong: _on_pong,
    }

    # --- helpers ----------------------------------------------------------

    def _send(self, message: p.Message) -> None:
        if self._known is not None:
            message = versions.narrow(message, self._known)  # an older client: only what it knows
        self._actions.append(Send(message))

    def _error(self, code: str, message: str, *, fatal: bool, close_code: int = CLOSE_PROTOCOL_ERROR) -> None:
        self._send(p.Error(code=code, message=message, fatal=fatal))
        if fatal:
            self.state = State.CLOSED
            self._pushes.clear()
            self._actions.append(Close(close_code, code))

    def _token_valid(self) -> bool:
        assert self.identity is not None
        expires = self.identity.expires_at_ms
        if expires is not None and self._now_ms() >= expires:
            self._error("token_expired", "the token has expired: reconnect with a new one", fatal=True,
                        close_code=CLOSE_POLICY_VIOLATION)
            return False
        return True

    def _allowed(self, scopes: frozenset[str], what: str) -> bool:
        assert self.identity is not None
        if self.identity.scopes & scopes:
            return True
        self._error(
            "forbidden",
            f"the token may not {what} (it needs one of the scopes {', '.join(sorted(scopes))})",
            fatal=False,
        )
        return False

    def _next_merge(self) -> None:
        if not self._merging and self._pushes and self.state is State.READY and not self._draining:
            self._merging = True
            self._actions.append(self._pushes.popleft())

    def _read(self) -> None:
        self._reading = True
        self._actions.append(ReadLog(self.position))

    def _read_or_wake(self) -> None:
        if self._reading:
            self._wake = True
        else:
            self._read()

    def _leave_live(self) -> None:
        if self.live:
            self.live = False
            self._actions.append(Live(None, self.position))

    def _next_snapshot(self) -> None:
        """Ask for the next chunk; with none left, start the stream if it waits."""
        if self._job is not None or self.state is not State.READY or self._draining:
            return
        if self._jobs:
            job = self._jobs.popleft()
            self._job = job
            self._actions.append(ReadSnapshot(job.shapes[job.index], job.after, job.position is None))
            return
        if not self.started and self._start_from is not None and self._subscriptions:
            self.started = True
            self.position = self._start_from
            self._start_from = None
            self._read_or_wake()

    def _must_resnapshot(self, oldest: int) -> None:
        """The log no longer reaches back to the stream's position: every
        subscription ends; the client subscribes again with a snapshot."""
        self._send(p.MustResnapshot(oldest=oldest))
        self._leave_live()
        self._subscriptions.clear()
        self._selection = {}
        self._jobs.clear()
        self.started = False
        self._start_from = None
        self._wake = False
        self.position = 0
