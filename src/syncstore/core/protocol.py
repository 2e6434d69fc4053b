"""The sync protocol's messages: tagged, frozen msgspec Structs sent as MessagePack.

One websocket binary frame carries one message. Every message has a ``type``
tag. The protocol evolves only by adding fields with defaults (old peers
ignore unknown fields, new peers fill defaults), and by bumping
``PROTOCOL_VERSION`` when that is not enough.

A session, from the client's side::

    -> Hello(token, site, cursor, acked_seq)      who I am, what I have
    <- Welcome(tenant, acked_seq, ...)            what the server has of mine
    -> Push(txs)                                  my local transactions, in order
    <- Ack(upto_seq, rejected)                    durably merged up to here
    -> Subscribe(shapes, cursor)                  what I want to receive
    <- Snapshot(...)* / Changes(txs)*             current rows, then the log
    <- UpToDate(cursor)                           caught up; live from here
    -> Fetch(id, table, ids)                      these rows as the server holds them now
    <- Rows(id, rows)                             every cell of each (absent ids: absent)
    <- Changes(txs, cursor)                       live, as they commit (cursor: and up to date there)
    <-> Ping / Pong                               keep-alive

Values in changes are canonical stored values (see :mod:`syncstore.schema`):
None, int, float, str or bytes. Clocks are packed HLC integers; sites are the
16-byte site ids.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from syncstore.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_FETCH_IDS = 1_000  # row ids in one Fetch


class _Message(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=False):
    pass


# --- payload pieces -----------------------------------------------------------


class LocalChange(msgspec.Struct, frozen=True, array_like=True):
    """One row written by the pushing client: the columns it wrote, at one clock.

    ``seen`` holds, per written column, the (hlc, site) of the version the
    writer replaced; the server records a conflict when its current version
    differs (the write was made without seeing it). None on insert.
    """

    seq: int  # the client's local sequence number: (site, seq) is unique
    table: str
    id: str
    hlc: int
    values: dict[str, Any]
    seen: dict[str, tuple[int, bytes]] | None = None


class LocalTx(msgspec.Struct, frozen=True, array_like=True):
    """Changes committed together on the client: applied together or not at all."""

    tx: int
    changes: list[LocalChange]


class RowChange(msgspec.Struct, frozen=True, array_like=True):
    """Cells of one row as the server holds them after a merge: {column: (value, hlc, site)}."""

    table: str
    id: str
    cells: dict[str, tuple[Any, int, bytes]]


class ConflictRecord(msgspec.Struct, frozen=True):
    """A concurrent edit the server resolved by last-write-wins, kept for people to inspect."""

    id: str
    table: str
    row_id: str
    column: str
    winner_value: Any
    winner_hlc: int
    winner_site: bytes
    loser_value: Any
    loser_hlc: int
    loser_site: bytes
    incoming_won: bool  # whether the write that arrived last won
    created_at: str = ""


class Columns(msgspec.Struct, frozen=True, array_like=True):
    """Whole rows of one table, column by column, every cell of a row at one
    clock: row i is ``ids[i]`` with ``values[c][i]`` in column ``columns[c]``
    and ``_deleted`` 0, each cell at ``(hlcs[i], sites[site_index[i]])``.
    Column names travel once per chunk instead of once per cell, and a
    snapshot's rows share a handful of sites."""

    table: str
    columns: list[str]  # every column but id (and _deleted, which is 0)
    ids: list[str]
    values: list[list[Any]]  # one list per column, one value per row
    hlcs: list[int]
    sites: list[bytes]
    site_index: list[int]

    def row_changes(self) -> list[RowChange]:
        """The same rows as RowChanges (for peers and paths that take those)."""
        names = (*self.columns, "_deleted")
        out = []
        for i, (row_id, hlc, site) in enumerate(zip(self.ids, self.hlcs, self.site_index)):
            at = self.sites[site]
            values = [column[i] for column in self.values]
            values.append(0)
            out.append(RowChange(self.table, row_id, {name: (value, hlc, at) for name, value in zip(names, values)}))
        return out


class ServerTx(msgspec.Struct, frozen=True, array_like=True):
    """What one server transaction changed, at its position in the server's log,
    and the conflicts it recorded (sent to the tenant's clients for their rows)."""

    seq: int
    changes: list[RowChange]
    conflicts: list[ConflictRecord] = []


class Shape(msgspec.Struct, frozen=True):
    """A table and equality/IN filters on indexed columns, within the client's tenant."""

    table: str
    where: dict[str, list[Any]] = {}


class Rejection(msgspec.Struct, frozen=True):
    """A pushed transaction the server refused for good (it will not retry well)."""

    tx: int
    code: str
    message: str


# --- messages -----------------------------------------------------------------


class Hello(_Message, tag="hello"):
    token: str
    site: bytes
    protocol: int = PROTOCOL_VERSION
    schema: int = 0  # the client's replica schema version
    cursor: int = 0  # the last server log position the client has applied
    acked_seq: int = 0  # the last of its own sequence numbers it knows were merged
    # The client reads ``Changes.cursor``: the server may then fold the
    # UpToDate that follows live changes into the Changes frame (one frame
    # per commit instead of two). Older clients leave it False and get both.
    changes_cursor: bool = False
    # The version of the synced tables the client knows
    # (``syncstore.schema.SCHEMA_VERSION``; 0: a client from before versions,
    # which is version 1). The server sends it only those tables and columns.
    synced_schema: int = 0


class Welcome(_Message, tag="welcome"):
    tenant: str
    acked_seq: int  # the server's record of this site's highest merged sequence
    protocol: int = PROTOCOL_VERSION
    schema: int = 0  # the server's database migration (for people reading logs)
    server_id: str = ""
    server_time_ms: int = 0
    max_batch: int = 0  # most changes one Push may carry (0: no limit given)
    max_frame: int = 0  # largest frame in bytes the server accepts
    # How far ahead of ``server_time_ms`` a change may be stamped (0: not
    # said; the default cap applies). A client holds back changes stamped
    # further ahead, and refuses new local writes past it.
    max_drift_ms: int = 0
    # The version of the synced tables the server knows (0: a server from
    # before versions, which is version 1). A newer client keeps back what
    # an older server could not take.
    synced_schema: int = 0
    # The fingerprint (syncstore.core.fingerprint) of this site's change at
    # acked_seq (b"": none merged, or a server that does not keep it): a file
    # whose own change there differs is a copy, and takes a new site id.
    acked_fingerprint: bytes = b""


class Push(_Message, tag="push"):
    txs: list[LocalTx]


class Ack(_Message, tag="ack"):
    upto_seq: int  # every change of this site with seq <= upto_seq is merged durably
    rejected: list[Rejection] = []
    # The server log position of the last entry this push added (0: none, or
    # not said). A client that wants to see what its push did on the server
    # (the merged cells, the conflict records it made) waits for its cursor
    # to reach it.
    log_seq: int = 0


class Subscribe(_Message, tag="subscribe"):
    """Receive the tenant's changes to ``shapes``. With ``snapshot`` the server
    first sends the shapes' current rows (Snapshot chunks), then the log: from
    ``cursor`` if it is not 0, else from the snapshot's position. ``resume``
    continues a snapshot that was cut off after the chunk that named it (give
    the snapshot's original position as ``cursor``)."""

    shapes: list[Shape]
    cursor: int = 0
    id: str = ""  # the client's name for this subscription, echoed back
    snapshot: bool = False
    resume: str = ""
    # The client reads ``Snapshot.columns``: the server may send the rows of
    # a chunk whose cells share one clock per row column by column. Older
    # clients leave it False and get every row as a RowChange.
    columnar: bool = False


class Unsubscribe(_Message, tag="unsubscribe"):
    id: str


class Snapshot(_Message, tag="snapshot"):
    """A chunk of current rows; ``position`` is the log position the snapshot is
    consistent with. ``last`` closes the snapshot; ``resume`` lets a client that
    was cut off ask for the rest (an opaque key)."""

    rows: list[RowChange]
    position: int
    last: bool = False
    resume: str = ""
    id: str = ""
    # The conflict records of the rows in this chunk's id range (live or
    # deleted there), resolved or not: what the log gave a replica that was
    # there when they were made.
    conflicts: list[ConflictRecord] = []
    # More rows of the chunk, column by column (only to a client whose
    # Subscribe set ``columnar``); ``rows`` then holds the rest.
    columns: Columns | None = None


class Changes(_Message, tag="changes"):
    txs: list[ServerTx]
    # Not 0: the stream is up to date at this position, as an UpToDate right
    # after these changes would say (sent only to a client whose Hello has
    # ``changes_cursor``).
    cursor: int = 0


class UpToDate(_Message, tag="up_to_date"):
    cursor: int


class MustResnapshot(_Message, tag="must_resnapshot"):
    """The client's cursor is older than the retained log: drop it and re-snapshot.
    The server has ended every subscription of the connection; the client
    subscribes again (with ``snapshot``) when it is ready."""

    oldest: int


class Resolved(_Message, tag="resolved"):
    """The client marked these conflict records resolved (its new value syncs as a write)."""

    conflict_ids: list[str]


class Fetch(_Message, tag="fetch"):
    """Read these rows of the tenant's table as the server holds them now
    (a replica following filtered shapes checks rows its own copy may hold
    wrongly inside them). At most ``MAX_FETCH_IDS`` ids."""

    id: str  # the client's name for this fetch, echoed back in Rows
    table: str
    ids: list[str]


class Rows(_Message, tag="rows"):
    """The rows a Fetch asked for: every cell with its clock, deleted rows as
    tombstones with every cell; ids the server does not hold are left out."""

    id: str
    rows: list[RowChange]


class Error(_Message, tag="error"):
    code: str
    message: str
    fatal: bool = False
    # Not 0: the same request may succeed after this many milliseconds (e.g.
    # a push stamped ahead of the server's clock, ``clock_drift``).
    retry_after_ms: int = 0


class Ping(_Message, tag="ping"):
    nonce: int = 0


class Pong(_Message, tag="pong"):
    nonce: int = 0


Message = Union[
    Hello,
    Welcome,
    Push,
    Ack,
    Subscribe,
    Unsubscribe,
    Snapshot,
    Changes,
    UpToDate,
    MustResnapshot,
    Resolved,
    Fetch,
    Rows,
    Error,
    Ping,
    Pong,
]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: _Message) -> bytes:
    return _encoder.encode(message)


def decode(frame: bytes) -> Message:
    """Decode one frame; anything malformed is a :class:`ProtocolError`."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise ProtocolError("frames must be binary MessagePack", code="bad_frame")
    try:
        return _decoder.decode(frame)
    except msgspec.ValidationError as exc:
        text = str(exc)
        code = "unknown_message" if "Invalid value" in text and "`$.type`" in text else "bad_message"
        raise ProtocolError(f"invalid message: {text}", code=code) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed MessagePack: {exc}", code="bad_frame") from None
