"""The merge of one push, decided in memory with the pure rule of :mod:`syncstore.core.merge`.

The store locks the rows a push touches, hands their cells here, and writes
back what this module decides: the final cells of every row that changed, and
per client transaction the cells the merge wrote (what subscribers receive)
and the conflict records it made. No I/O happens here, so the same decisions
can be checked in tests without a database.

A conflict is recorded for a written column when the value the server holds is
a version the writer had not seen (``merge.is_concurrent``) and the two values
differ, whichever of them wins. A cell nobody has written (the zero clock)
never conflicts: there was nothing to compete with. ``updated_at`` never
conflicts either: every edit stamps it, so two edits of different columns would
otherwise "conflict" on it, and an edit of one column would be recorded twice.

Rows are created only by inserts (a change carrying ``_deleted: 0``). A write
of some columns to a row the server does not hold is dropped: the row was
deleted and its tombstone collected (see compaction), and writing its cells
would bring it back. A write to a row that is a tombstone is logged with the
row's ``_deleted`` cell, so a replica that never had the row keeps it deleted.

A row is always created whole: an insert that leaves columns out (a client of
an older schema, or one that builds its own changes) has them written with
their defaults at its own clock, and logged so, exactly as a replica's insert
writes every column. One that leaves out a required column cannot make a row
any replica would take: its transaction is refused (:func:`unborn`).
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, Iterable, NamedTuple

from syncstore import schema
from syncstore.core import merge
from syncstore.core import protocol as p
from syncstore.core import shapes
from syncstore.core.ids import uuid7 as new_id  # a conflict record's id (time-ordered)
from syncstore.core.merge import DELETED, Cell

from syncstore_server.validate import Checked

RowKey = tuple[str, str]  # (table, id)
UNCONTESTED = frozenset({"updated_at"})  # bookkeeping every write stamps: merged, never a conflict


class Row:
    """One row's cells as the server holds them: ``_deleted`` and the columns
    read (every column but ``id`` for a new row; for an existing one, those the
    push writes). ``view`` and ``stored`` are the store's: how it was read, and
    the stored clocks of the cells not read."""

    __slots__ = ("cells", "exists", "dirty", "view", "stored")

    def __init__(self, cells: dict[str, Cell], *, exists: bool, view: Any = None, stored: Any = None):
        self.cells = cells
        self.exists = exists  # already in the database (else: inserted by this merge)
        self.dirty = False
        self.view = view
        self.stored = stored


class Conflict(NamedTuple):
    table: str
    row_id: str
    column: str
    winner: Cell
    loser: Cell
    incoming_won: bool
    id: str


class PlannedTx(NamedTuple):
    """What one client transaction did: the log entry it becomes."""

    origin_tx: int
    changes: list[p.RowChange]
    conflicts: list[Conflict]

    @property
    def tables(self) -> list[str]:
        return sorted({c.table for c in self.changes} | {c.table for c in self.conflicts})


def _empty(table: schema.Table) -> dict[str, Cell]:
    cells = {c.name: Cell(c.default, 0, b"") for c in table.columns[1:]}
    cells[DELETED] = Cell(0, 0, b"")
    return cells


_EMPTY = {name: _empty(tbl) for name, tbl in schema.TABLES.items()}
_REQUIRED = {name: tuple(c.name for c in tbl.columns[1:] if c.required) for name, tbl in schema.TABLES.items()}


def empty_row(table: str) -> dict[str, Cell]:
    """The cells of a row nobody has written: defaults at the zero clock."""
    return dict(_EMPTY[table])


def plan_tx(
    changes: Iterable[Checked],
    rows: dict[RowKey, Row],
    *,
    site: bytes,
    origin_tx: int,
) -> PlannedTx:
    """Merge one client transaction into ``rows`` (updated in place)."""
    written: dict[RowKey, dict[str, Cell]] = {}
    conflicts: list[Conflict] = []
    make = tuple.__new__  # Cell(...) through its Python __new__ costs twice as much
    cell_class = repeat(Cell)
    wins = merge.wins
    is_concurrent = merge.is_concurrent
    for change in changes:
        key = (change.table, change.id)
        row = rows.get(key)
        hlc = change.hlc
        values = change.values
        if row is None:
            if values.get(DELETED) != 0:
                continue  # not an insert: the row is gone (collected); never bring it back
            # A row nobody has written: every cell holds the zero clock, which
            # loses to any real write, so every incoming cell wins and nothing
            # competes (this is merge_row's answer, without asking it per cell).
            # The cells are made by map/zip: no Python-level loop per column.
            incoming = dict(zip(values, map(make, cell_class, zip(values.values(), repeat(hlc), repeat(site)))))
            cells = dict(_EMPTY[change.table])
            if len(incoming) != len(cells):
                # A partial insert: the other columns get their defaults, written
                # by this insert (a cell at the zero clock is no replica's to take).
                incoming = {name: make(Cell, (cell.value, hlc, site)) for name, cell in cells.items()} | incoming
            cells.update(incoming)
            row = rows[key] = Row(cells, exists=False)
            row.dirty = True
            written[key] = incoming
            continue
        # merge.merge_row and the conflict check in one pass: each column
        # appears once in a change, so the merged row's cell for a column is
        # still the one held before the change until this column is merged.
        current = row.cells
        seen = change.seen
        merged = None  # copied on the first change, as merge_row copies
        changed = None
        for name, value in values.items():
            cell = make(Cell, (value, hlc, site))
            held = current[name]
            if not (held.hlc == 0 or held.value == value or name in UNCONTESTED):
                if is_concurrent(held, None if seen is None else seen.get(name)):
                    won = wins(cell, held)
                    winner, loser = (cell, held) if won else (held, cell)
                    conflicts.append(Conflict(change.table, change.id, name, winner, loser, won, new_id()))
            # merge.wins, with its common cases inline (its tie-break is asked of it).
            if held.hlc != hlc:
                won = hlc > held.hlc
            elif held.site != site:
                won = site > held.site
            else:
                won = wins(cell, held)
            if won:
                if held != cell:
                    if changed is None:
                        changed = []
                    changed.append(name)
                if merged is None:
                    merged = dict(current)
                merged[name] = cell
        if not changed:
            continue  # any cell merged equals the one held: the row stays as it is
        row.cells = merged
        row.dirty = True
        cells = written.setdefault(key, {})
        for name in changed:
            cells[name] = merged[name]
        if merged[DELETED].value == 1 and DELETED not in cells:
            cells[DELETED] = merged[DELETED]
    row_changes = [p.RowChange(table, row_id, cells) for (table, row_id), cells in written.items()]
    return PlannedTx(origin_tx, row_changes, conflicts)


def unborn(changes: Iterable[Checked], rows: dict[RowKey, Row]) -> str | None:
    """Why one client transaction would create a row without a column its table
    requires (no replica could take that row), or None. ``rows`` holds the
    rows that exist before it (as :func:`plan_tx` gets them)."""
    born: set[RowKey] = set()
    for change in changes:
        key = (change.table, change.id)
        if key in rows or key in born or change.values.get(DELETED) != 0:
            continue
        missing = [name for name in _REQUIRED[change.table] if name not in change.values]
        if missing:
            return (
                f"{change.table} row {change.id!r} is not on the server: a change that makes it live "
                f"must give {', '.join(missing)}"
            )
        born.add(key)
    return None


def conflict_record(conflict: Conflict, *, created_at: str) -> p.ConflictRecord:
    return p.ConflictRecord(
        id=conflict.id,
        table=conflict.table,
        row_id=conflict.row_id,
        column=conflict.column,
        winner_value=conflict.winner.value,
        winner_hlc=conflict.winner.hlc,
        winner_site=conflict.winner.site,
        loser_value=conflict.loser.value,
        loser_hlc=conflict.loser.hlc,
        loser_site=conflict.loser.site,
        incoming_won=conflict.incoming_won,
        created_at=created_at,
    )


# --- routing keys -------------------------------------------------------------------


_INDEXES = {name: tbl.indexes for name, tbl in schema.TABLES.items()}


def indexed_values(table: str, cells: dict[str, Cell]) -> dict[str, Any]:
    return {column: cells[column].value for column in _INDEXES[table] if column in cells}


def routing_keys(
    entry: PlannedTx, rows: dict[RowKey, Row], before: dict[RowKey, dict[str, Any] | None]
) -> list[shapes.RowKeys]:
    """The routing keys of the rows one planned transaction touched (see
    :class:`syncstore.core.shapes.RowKeys`): ``before`` holds each touched
    row's indexed values before the transaction (None: it did not exist)."""
    out = []
    seen: set[RowKey] = set()
    touched = [(c.table, c.id) for c in entry.changes] + [(c.table, c.row_id) for c in entry.conflicts]
    for key in touched:
        if key in seen or key not in rows:
            continue
        seen.add(key)
        cells = rows[key].cells
        after = indexed_values(key[0], cells)
        old = before.get(key)
        if old is None:
            out.append(shapes.RowKeys(key[0], key[1], after, None, None))
            continue
        moved = {column: value for column, value in old.items() if after.get(column) != value}
        full = dict(zip(cells, map(tuple, cells.values()))) if moved else None  # no Python loop per column
        out.append(shapes.RowKeys(key[0], key[1], after, moved, full))  # type: ignore[arg-type]
    return out
