"""The merge rule, the same everywhere: on every replica and on the server.

Each (table, row, column) holds a *cell*: a value with the stamp and site of
the write that produced it. Of two cells the one with the greater
``(hlc, site)`` wins. Deletes are an ordinary column, ``_deleted``, so a
tombstone takes part in the same order and an older write arriving late cannot
undo it. Stamps are unique per write (a site never reuses one), so the value
only breaks ties in the degenerate case of a replayed stamp, which keeps the
rule a total order: merge is commutative, associative and idempotent.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import msgspec

DELETED = "_deleted"


class Cell(NamedTuple):
    value: Any
    hlc: int
    site: bytes


def _key(cell: Cell) -> tuple[int, bytes, bytes]:
    return cell.hlc, cell.site, msgspec.msgpack.encode(cell.value)


def wins(incoming: Cell, current: Cell | None) -> bool:
    """True when ``incoming`` replaces ``current``."""
    if current is None:
        return True
    if incoming.hlc != current.hlc:
        return incoming.hlc > current.hlc
    if incoming.site != current.site:
        return incoming.site > current.site
    return _key(incoming) > _key(current)


def merge_cell(a: Cell | None, b: Cell | None) -> Cell | None:
    if b is None:
        return a
    return b if wins(b, a) else a


def merge_row(current: Mapping[str, Cell], incoming: Mapping[str, Cell]) -> tuple[dict[str, Cell], list[str]]:
    """Merge two rows of cells; return the merged row and the columns that changed."""
    merged = dict(current)
    changed = []
    for column, cell in incoming.items():
        if wins(cell, merged.get(column)):
            if column not in merged or merged[column] != cell:
                changed.append(column)
            merged[column] = cell
    return merged, changed


def is_concurrent(current: Cell | None, seen: tuple[int, bytes] | None) -> bool:
    """Whether a write made after seeing ``seen`` competes with ``current``.

    The writer saw ``seen`` (None: it saw no value). If the value now held is a
    different version, the two writes were made without knowledge of each
    other: that is a conflict, whichever wins.
    """
    if current is None:
        return False
    if seen is None:
        return True
    return (current.hlc, current.site) != tuple(seen)
