"""Shapes: which rows of a tenant a subscription receives. Pure logic, no I/O.

A :class:`~syncstore.core.protocol.Shape` names a synced table and, optionally,
filters: ``{column: [value, ...]}`` on indexed columns
(``syncstore.schema.TABLES[t].indexes``). A row is in the shape when, for every
filtered column, its value is one of the values given (equality, or IN when
several are given). The tenant is never part of a shape: the server always
intersects with the tenant of the token.

Routing needs more than the cells a change carries (an update of ``title``
does not say which ``repository`` the task belongs to), so the server keeps,
beside each log entry, the :class:`RowKeys` of every row the entry touches:
the row's indexed values after the change, the old values of indexed columns
the change moved, and, when it moved any, every cell of the row.

A row moving *into* or *out of* any of a stream's shapes is sent whole.
Into: its subscriber may never have had it. Out of: the subscriber's copy
shows the new values, which no longer match, and later changes of the row are
not sent (the row stays in the replica). Whole both ways, even when the row
was or stays inside another of the stream's shapes, because the stream cannot
tell whether the subscriber holds the row: each shape's snapshot reads rows as
they are when its chunk is read, which may be after the position the stream
starts from (another shape's snapshot position, or the cursor of the live
shapes when a shape is added). A row that left a shape before that shape's
snapshot reached it was never sent, yet the stream meets the move as one of a
row in the shape. Its moved cells alone would leave a partial row (the other
columns at their defaults), which may lie inside another shape of the replica
while the server's row does not. A change that moves the row into or out of
none of the shapes carries only the changed cells.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import msgspec

from syncstore import schema
from syncstore.core import protocol as p
from syncstore.errors import ProtocolError, ValidationError

MAX_SHAPE_VALUES = 1_000  # values of one filter column (an IN list)
MAX_SHAPES = 100  # shapes of one subscription


class ShapeFilter(NamedTuple):
    """A checked shape: the table and, per filtered column (sorted), the values allowed."""

    table: str
    where: tuple[tuple[str, frozenset[Any]], ...] = ()

    @property
    def whole(self) -> bool:
        return not self.where

    def matches(self, values: Mapping[str, Any]) -> bool:
        """Whether a row with these (indexed) values is in the shape."""
        for column, allowed in self.where:
            if values.get(column) not in allowed:
                return False
        return True

    def to_shape(self) -> p.Shape:
        return p.Shape(table=self.table, where={c: sorted(v, key=_sort_key) for c, v in self.where})


def _sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value if value is not None else 0)


def check_shape(shape: p.Shape, tables: Iterable[str] | None = None) -> ShapeFilter:
    """The shape checked against the schema, values in canonical form; a
    ProtocolError (``unknown_table``, ``unsupported_shape``, ``bad_subscribe``) if not."""
    known = schema.TABLES if tables is None else tables
    if not isinstance(shape.table, str) or shape.table not in known or shape.table not in schema.TABLES:
        raise ProtocolError(f"no synced table {shape.table!r}", code="unknown_table")
    tbl = schema.TABLES[shape.table]
    where = []
    for column, values in sorted(shape.where.items()):
        if column not in tbl.indexes:
            raise ProtocolError(
                f"{tbl.name}.{column} cannot filter a shape: filters use indexed columns "
                f"({', '.join(tbl.indexes)})",
                code="unsupported_shape",
            )
        if not isinstance(values, list) or not values:
            raise ProtocolError(f"the filter on {tbl.name}.{column} needs a list of values", code="bad_subscribe")
        if len(values) > MAX_SHAPE_VALUES:
            raise ProtocolError(f"at most {MAX_SHAPE_VALUES} values per filter column", code="bad_subscribe")
        col = tbl.column(column)
        canonical = set()
        for value in values:
            if value is None:
                canonical.add(None)
                continue
            try:
                canonical.add(schema.to_storage(col, value, table_name=tbl.name))
            except ValidationError as exc:
                raise ProtocolError(f"bad filter value for {tbl.name}.{column}: {exc}", code="bad_subscribe") from None
            except TypeError:
                raise ProtocolError(f"bad filter value for {tbl.name}.{column}", code="bad_subscribe") from None
        where.append((column, frozenset(canonical)))
    return ShapeFilter(tbl.name, tuple(where))


def shape_key(shape: ShapeFilter) -> str:
    """A stable text name of a shape (the same shape gives the same key)."""
    return msgspec.json.encode([shape.table, [[c, sorted(v, key=_sort_key)] for c, v in shape.where]]).decode()


# --- routing keys ----------------------------------------------------------------


class RowKeys(NamedTuple):
    """What routing needs of one row a log entry touches.

    ``after``: the row's indexed values after the entry. ``before``: the old
    values of indexed columns the entry changed (``{}``: none changed; None:
    the entry created the row). ``full``: every cell of the row after the
    entry, kept when ``before`` is not empty (a row moving into or out of a
    shape is sent whole).
    """

    table: str
    id: str
    after: dict[str, Any]
    before: dict[str, Any] | None = None
    full: dict[str, tuple[Any, int, bytes]] | None = None


class LogEntry(NamedTuple):
    """One server transaction as the log holds it, with its rows' routing keys."""

    seq: int
    tx: p.ServerTx
    keys: list[RowKeys] | None = None  # None: not recorded (then the cells present decide)


_keys_encoder = msgspec.msgpack.Encoder()
_keys_decoder = msgspec.msgpack.Decoder(list[RowKeys])


def encode_keys(keys: Sequence[RowKeys]) -> bytes:
    return _keys_encoder.encode(list(keys))


def decode_keys(blob: bytes | None) -> list[RowKeys] | None:
    return None if blob is None else _keys_decoder.decode(blob)


class Match(NamedTuple):
    deliver: bool
    moved: bool  # the row entered or left the shape with this entry: send it whole


NO = Match(False, False)
YES = Match(True, False)


def match_row(shape: ShapeFilter, keys: RowKeys | None, change: p.RowChange | None) -> Match:
    """Whether a row touched by an entry goes to a shape's subscriber, and whole or not."""
    if shape.whole:
        return YES
    if keys is None:
        # No routing keys (an entry recorded without them): only the cells the
        # change carries can decide, and only when it carries every filtered column.
        if change is None:
            return NO
        values = {}
        for column, _ in shape.where:
            cell = change.cells.get(column)
            if cell is None:
                return NO
            values[column] = cell[0]
        return YES if shape.matches(values) else NO
    now = shape.matches(keys.after)
    if keys.before is None:  # a new row: its change carries every cell
        return YES if now else NO
    if keys.before:
        was = shape.matches({**keys.after, **keys.before})
        if now != was:
            return Match(True, keys.full is not None)
    return YES if now else NO


def select(entry: LogEntry, shapes: Mapping[str, Sequence[ShapeFilter]]) -> p.ServerTx | None:
    """The part of a log entry a subscriber of ``shapes`` ({table: [filter]}) receives."""
    tx = entry.tx
    by_row = {(k.table, k.id): k for k in entry.keys} if entry.keys else {}
    changes: list[p.RowChange] = []
    rows: set[tuple[str, str]] = set()
    whole = True
    for change in tx.changes:
        match = _match_any(shapes.get(change.table), by_row.get((change.table, change.id)), change)
        if not match.deliver:
            whole = False
            continue
        key = (change.table, change.id)
        rows.add(key)
        if match.moved:
            whole = False
            changes.append(p.RowChange(change.table, change.id, dict(by_row[key].full or {})))
        else:
            changes.append(change)
    conflicts = []
    for c in tx.conflicts:
        key = (c.table, c.row_id)
        if key in rows or _match_any(shapes.get(c.table), by_row.get(key), None).deliver:
            conflicts.append(c)
        else:
            whole = False
    if not changes and not conflicts:
        return None
    if whole:
        return tx
    return p.ServerTx(seq=tx.seq, changes=changes, conflicts=conflicts, group_end=tx.group_end)


def _match_any(filters: Sequence[ShapeFilter] | None, keys: RowKeys | None, change: p.RowChange | None) -> Match:
    if not filters:
        return NO
    best = NO
    for shape in filters:
        found = match_row(shape, keys, change)
        if found.moved:
            # Whole even if the row stays inside another of the shapes: that
            # shape's snapshot may have been read after the row left it, so
            # being in it says nothing of what the subscriber holds.
            return found
        if found.deliver:
            best = found
    return best


def by_table(filters: Iterable[ShapeFilter]) -> dict[str, list[ShapeFilter]]:
    out: dict[str, list[ShapeFilter]] = {}
    for shape in filters:
        out.setdefault(shape.table, []).append(shape)
    return out
