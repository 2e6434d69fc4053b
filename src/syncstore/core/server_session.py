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

- :class:`Send`: send this message.
- :class:`Authenticate`: check the token; then :meth:`accept` or :meth:`refuse`.
- :class:`Merge`: merge these local transactions of the session's site, each
  atomically and at most once; then :meth:`merged` (or :meth:`merge_failed`).
  At most one merge is asked for at a time, in the order the pushes came.
- :class:`ReadLog`: read the tenant's log after a position; then
  :meth:`log_read`. At most one read is asked for at a time.
- :class:`Resolve`: mark these conflict records of the tenant resolved.
- :class:`Close`: close the connection with this code and reason.

The stream: a Subscribe starts (or widens) one stream of the tenant's log from
the given cursor; every read ends in Changes (if anything matched) and, when
the read reached the end of the log, UpToDate(position). A new commit
(:meth:`notify`) asks for another read from the position reached, so live
changes follow with no polling.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Callable, Iterable, NamedTuple, Sequence, Union

from syncstore.core import protocol as p
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


class Resolve(NamedTuple):
    conflict_ids: list[str]


class Close(NamedTuple):
    code: int
    reason: str


Action = Union[Send, Authenticate, Merge, ReadLog, Resolve, Close]


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
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.tables = frozenset(tables)
        self.max_batch = max_batch
        self.max_frame = max_frame
        self.server_id = server_id
        self.schema = schema
        self._now_ms = now_ms
        self.state = State.AWAIT_HELLO
        self.site: bytes | None = None
        self.identity: Identity | None = None
        self.acked_seq = 0
        self._actions: list[Action] = []
        self._pushes: deque[Merge] = deque()
        self._merging = False
        # The stream: subscription id -> tables; the position delivered up to.
        self._subscriptions: dict[str, frozenset[str]] = {}
        self.position = 0
        self._reading = False
        self._wake = False
        self._draining = False

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
        return frozenset().union(*self._subscriptions.values()) if self._subscriptions else frozenset()

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

    def accept(self, identity: Identity, *, acked_seq: int) -> None:
        """The token is good; ``acked_seq`` is the server's record for this site."""
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
        self._next_merge()

    def merge_failed(self, code: str, message: str) -> None:
        """The merge could not run (the database is away): nothing was merged.
        Later pushes are dropped too (they would arrive out of order); the
        client pushes again after reconnecting."""
        if not self._merging:
            raise ProtocolError("merge_failed() with no merge running", code="state")
        self._merging = False
        self._pushes.clear()
        self._error(code, message, fatal=True, close_code=1011)

    def log_read(self, entries: Sequence[tuple[int, p.ServerTx]], *, more: bool) -> None:
        """The log entries after the position asked for, oldest first, and
        whether the read stopped at its limit (``more``) before the end."""
        if not self._reading:
            raise ProtocolError("log_read() with no read running", code="state")
        self._reading = False
        if self.state is not State.READY:
            return
        tables = self.subscribed_tables
        out: list[p.ServerTx] = []
        for seq, tx in entries:
            if seq <= self.position:
                continue  # the stream was rewound or read twice; never go back
            kept = _only_tables(tx, tables)
            if kept is not None:
                out.append(kept)
            self.position = seq
        if out:
            self._send(p.Changes(txs=out))
        if (more or self._wake) and not self._draining:
            self._wake = False
            self._read()
        else:
            self._send(p.UpToDate(cursor=self.position))

    def log_failed(self, code: str, message: str) -> None:
        """The read could not run: end the session (the client resumes from its cursor)."""
        self._reading = False
        self._error(code, message, fatal=True, close_code=1011)

    def notify(self) -> None:
        """Something was committed to this tenant's log."""
        if self.state is not State.READY or not self._subscriptions or self._draining:
            return
        if self._reading:
            self._wake = True
        else:
            self._read()

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
        tables = set()
        for shape in msg.shapes:
            if shape.table not in self.tables:
                self._error("unknown_table", f"no synced table {shape.table!r}", fatal=False)
                return
            if shape.where:
                self._error(
                    "unsupported_shape", "this server streams whole tables: shapes with filters are not served yet",
                    fatal=False,
                )
                return
            tables.add(shape.table)
        if not tables:
            self._error("bad_subscribe", "a Subscribe names at least one table", fatal=False)
            return
        first = not self._subscriptions
        self._subscriptions[msg.id] = frozenset(tables)
        # One stream serves every subscription: a cursor behind the stream
        # rewinds it (what is sent again merges to nothing on the client).
        self.position = msg.cursor if first else min(self.position, msg.cursor)
        if self._reading:
            self._wake = True
        else:
            self._read()

    def _on_unsubscribe(self, msg: p.Unsubscribe) -> None:
        self._subscriptions.pop(msg.id, None)

    def _on_resolved(self, msg: p.Resolved) -> None:
        if not self._allowed(PUSH_SCOPES, "resolve conflicts"):
            return
        if len(msg.conflict_ids) > MAX_RESOLVED_IDS:
            self._error("bad_resolved", f"at most {MAX_RESOLVED_IDS} conflict ids at once", fatal=False)
            return
        if msg.conflict_ids:
            self._actions.append(Resolve(list(msg.conflict_ids)))

    def _on_ping(self, msg: p.Ping) -> None:
        self._send(p.Pong(nonce=msg.nonce))

    def _on_pong(self, msg: p.Pong) -> None:
        pass  # any message is a sign of life; the driver notes the time

    _handlers: dict[type, Callable[[ServerSession, p.Message], None]] = {
        p.Hello: _on_hello,
        p.Push: _on_push,
        p.Subscribe: _on_subscribe,
        p.Unsubscribe: _on_unsubscribe,
        p.Resolved: _on_resolved,
        p.Ping: _on_ping,
        p.Pong: _on_pong,
    }

    # --- helpers ----------------------------------------------------------

    def _send(self, message: p.Message) -> None:
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


def _only_tables(tx: p.ServerTx, tables: frozenset[str]) -> p.ServerTx | None:
    """The part of a server transaction about ``tables`` (None if nothing)."""
    if all(change.table in tables for change in tx.changes) and all(c.table in tables for c in tx.conflicts):
        return tx
    changes = [change for change in tx.changes if change.table in tables]
    conflicts = [c for c in tx.conflicts if c.table in tables]
    if not changes and not conflicts:
        return None
    return p.ServerTx(seq=tx.seq, changes=changes, conflicts=conflicts)
