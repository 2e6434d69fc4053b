"""What a peer of an older schema version can take. Pure logic, no I/O.

Peers announce their schema version at connect (``Hello.synced_schema``,
``Welcome.synced_schema``; see :data:`syncstore.schema.SCHEMA_VERSION`). The
newer side adapts to the older one:

- a server sends an older client only the tables and columns of its version
  (:func:`narrow`): cells of newer columns and rows of newer tables are left
  out of Changes, Snapshot chunks and Rows, and so are conflict records about
  them; a client's shapes and fetches may name only the tables it knows;
- a client keeps back from an older server what it could not take
  (:func:`strip_push`): a pushed change loses the cells of newer columns, a
  change to a newer table goes whole; the parts kept back are returned so the
  client can hold them until it meets a server that knows them.

An older client's insert lacks the newer columns: the server fills them with
their defaults (``syncstore_server.validate``), and its updates never touch them.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import msgspec

from syncstore import schema
from syncstore.core import protocol as p
from syncstore.core.merge import DELETED

# Per table a peer knows: the names a change or a row of it may carry.
Known = Mapping[str, frozenset[str]]

_KNOWN: dict[tuple[int, int, int], tuple[Any, Known]] = {}


def known(version: int) -> Known | None:
    """The tables and columns a peer of ``version`` knows, or None when it
    knows every one this library does (nothing to leave out)."""
    if version >= schema.SCHEMA_VERSION:
        return None
    key = (id(schema.TABLES), schema.SCHEMA_VERSION, version)
    cached = _KNOWN.get(key)
    if cached is not None and cached[0] is schema.TABLES:
        return cached[1]
    found = {
        name: frozenset((*tbl.column_names, DELETED)) for name, tbl in schema.tables_at(version).items()
    }
    _KNOWN[key] = (schema.TABLES, found)
    return found


def describe(version: int) -> str:
    """The tables and columns newer than ``version``, for people ("tasks.branch, workflows")."""
    parts = []
    for name, columns in schema.added_after(version).items():
        if schema.TABLES[name].since > version:
            parts.append(name)
        else:
            parts.extend(f"{name}.{column.name}" for column in columns)
    return ", ".join(parts)


# --- a server's answers, for an older client -----------------------------------


def narrow_row(row: p.RowChange, known: Known) -> p.RowChange | None:
    """The row with only the cells ``known`` holds (None: nothing left)."""
    names = known.get(row.table)
    if names is None:
        return None
    cells = row.cells
    if cells.keys() <= names:
        return row
    kept = {name: cell for name, cell in cells.items() if name in names}
    return p.RowChange(row.table, row.id, kept) if kept else None


def narrow_rows(rows: Iterable[p.RowChange], known: Known) -> list[p.RowChange]:
    out = []
    for row in rows:
        kept = narrow_row(row, known)
        if kept is not None:
            out.append(kept)
    return out


def narrow_conflicts(records: Sequence[p.ConflictRecord], known: Known) -> list[p.ConflictRecord]:
    return [c for c in records if c.column in known.get(c.table, ())]


def narrow_tx(tx: p.ServerTx, known: Known) -> p.ServerTx:
    """The transaction as an older client takes it (it may be left with no
    change: it still moves the client's cursor)."""
    changes = narrow_rows(tx.changes, known)
    conflicts = narrow_conflicts(tx.conflicts, known)
    if len(changes) == len(tx.changes) and len(conflicts) == len(tx.conflicts) and all(
        a is b for a, b in zip(changes, tx.changes)
    ):
        return tx
    return p.ServerTx(tx.seq, changes, conflicts)


def narrow_columns(chunk: p.Columns, known: Known) -> p.Columns | None:
    names = known.get(chunk.table)
    if names is None:
        return None
    if all(name in names for name in chunk.columns):
        return chunk
    keep = [i for i, name in enumerate(chunk.columns) if name in names]
    return msgspec.structs.replace(
        chunk, columns=[chunk.columns[i] for i in keep], values=[chunk.values[i] for i in keep]
    )


def narrow(message: p.Message, known: Known) -> p.Message:
    """A server's message as a client knowing only ``known`` takes it
    (messages that carry no rows are returned as they are)."""
    if isinstance(message, p.Changes):
        return p.Changes(txs=[narrow_tx(tx, known) for tx in message.txs], cursor=message.cursor)
    if isinstance(message, p.Snapshot):
        columns = None if message.columns is None else narrow_columns(message.columns, known)
        return msgspec.structs.replace(
            message,
            rows=narrow_rows(message.rows, known),
            conflicts=narrow_conflicts(message.conflicts, known),
            columns=columns,
        )
    if isinstance(message, p.Rows):
        return p.Rows(id=message.id, rows=narrow_rows(message.rows, known))
    return message


# --- a client's pushes, for an older server --------------------------------------


def strip_change(change: p.LocalChange, known: Known) -> tuple[p.LocalChange | None, p.LocalChange | None]:
    """(what an older server can take, what it cannot) of one change; either may be None."""
    names = known.get(change.table)
    if names is None:
        return None, change
    values = change.values
    if values.keys() <= names:
        return change, None
    seen = change.seen

    def part(inside: bool) -> p.LocalChange | None:
        kept = {k: v for k, v in values.items() if (k in names) == inside}
        if not kept:
            return None
        kept_seen = None if seen is None else {k: v for k, v in seen.items() if k in kept}
        return msgspec.structs.replace(change, values=kept, seen=kept_seen)

    return part(True), part(False)


def strip_push(txs: Sequence[p.LocalTx], known: Known) -> tuple[list[p.LocalTx], list[p.LocalChange]]:
    """The transactions as an older server can take them (a transaction left
    with no change is left out) and the parts kept back, in log order."""
    out: list[p.LocalTx] = []
    held: list[p.LocalChange] = []
    for tx in txs:
        changes = []
        whole = True
        for change in tx.changes:
            sendable, kept_back = strip_change(change, known)
            if sendable is not None:
                changes.append(sendable)
            if kept_back is not None:
                held.append(kept_back)
                whole = False
        if changes:
            out.append(tx if whole else p.LocalTx(tx.tx, changes))
    return out, held


def needed_version(change: p.LocalChange) -> int:
    """The schema version a server needs to take all of ``change``."""
    tbl = schema.TABLES.get(change.table)
    if tbl is None:
        return schema.SCHEMA_VERSION
    version = tbl.since
    for column in tbl.columns:
        if column.name in change.values:
            version = max(version, column.since)
    return version


def knows_table(known: Known | None, table: str) -> bool:
    return known is None or table in known


def knows_shape(known: Known | None, shape: p.Shape) -> bool:
    """Whether a server knowing ``known`` can serve ``shape`` (its table and filter columns)."""
    if known is None:
        return True
    names = known.get(shape.table)
    return names is not None and all(column in names for column in shape.where)
