"""Log entries of any size: a server transaction too large for one entry goes as a group.

A log entry is what one Changes frame carries to a client (a transaction is
never split across frames), so an entry must stay well under the frame limit.
A merge whose entry would be larger (a large transaction, pushed in parts or
whole) is logged as a *group*: consecutive entries, each under ``max_bytes``,
each carrying ``group_end``, the position of the group's last entry. They are
written in one database transaction under the tenant's log lock, so readers
see all of them or none, and a client applies the whole group in one local
transaction (see :mod:`syncstore.core.client_session`).

Positions are drawn only once the entries are known (under the log lock), so
an entry is encoded first with position 0 and no group (its *body*), and the
position and ``group_end`` are written into the bytes when they are known
(:func:`with_position`): the body is encoded once, whatever its size.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import msgspec

from syncstore.core import protocol as p
from syncstore.core import shapes

_encode = msgspec.msgpack.encode
# ServerTx is an array of 4 (seq, changes, conflicts, group_end): a fixarray
# header, then seq; group_end is the last item. With both 0, each is one byte.
_HEAD = b"\x94\x00"
_TAIL = b"\x00"


class Piece(NamedTuple):
    """One log entry to write: its body (see :func:`body`), its rows' routing
    keys, the tables it touches, and its conflict records."""

    body: bytes
    keys: list[shapes.RowKeys]
    tables: list[str]
    conflicts: list[p.ConflictRecord]


def body(changes: list[p.RowChange], conflicts: list[p.ConflictRecord]) -> bytes:
    """The entry's payload at position 0 and in no group."""
    out = _encode(p.ServerTx(seq=0, changes=changes, conflicts=conflicts))
    assert out.startswith(_HEAD) and out.endswith(_TAIL)
    return out


def with_position(body: bytes, seq: int, group_end: int = 0) -> bytes:
    """The payload of the entry at ``seq`` (in a group ending at ``group_end``):
    what ``ServerTx(seq, changes, conflicts, group_end)`` encodes to."""
    return b"\x94" + _encode(seq) + body[2:-1] + _encode(group_end)


def pieces(
    changes: list[p.RowChange],
    conflicts: list[p.ConflictRecord],
    keys: Sequence[shapes.RowKeys],
    *,
    max_bytes: int,
) -> list[Piece]:
    """One server transaction as entries of at most ``max_bytes`` (unless a
    single row is larger: a row is never split), each row's conflict records
    and routing keys with it. One piece when it fits."""
    encoded = body(changes, conflicts)
    if len(encoded) <= max_bytes or len(changes) < 2:
        return [Piece(encoded, list(keys), _tables(changes, conflicts), conflicts)]
    half = len(changes) // 2
    first, second = changes[:half], changes[half:]
    rows = {(c.table, c.id) for c in second}
    # A record (or key) goes with the half holding its row's change; one
    # whose row changed in neither (the incoming write lost) goes first.
    later = [c for c in conflicts if (c.table, c.row_id) in rows]
    sooner = [c for c in conflicts if (c.table, c.row_id) not in rows]
    later_keys = [k for k in keys if (k.table, k.id) in rows]
    sooner_keys = [k for k in keys if (k.table, k.id) not in rows]
    return pieces(first, sooner, sooner_keys, max_bytes=max_bytes) + pieces(
        second, later, later_keys, max_bytes=max_bytes
    )


def _tables(changes: list[p.RowChange], conflicts: list[p.ConflictRecord]) -> list[str]:
    return sorted({c.table for c in changes} | {c.table for c in conflicts})
