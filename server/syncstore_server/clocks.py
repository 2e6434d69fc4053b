"""Per-column clocks in a server row's hidden columns: the replica's scheme.

A row keeps one clock in ``_hlc``/``_site`` (the base) and, in ``_clocks``, a
MessagePack map ``{column: [hlc, site]}`` of the cells whose clock differs. Any
base reads back the same cells; the server takes the clock of the row's
``_deleted`` cell, which is usually the most common one. A row written by one
insert of every column needs no map at all; each later update adds the columns
it wrote. A cell nobody has written holds the column's default at the zero
clock, which loses to every real write.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import msgspec

from syncstore.core.merge import DELETED

Clock = tuple[int, bytes]

_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.Decoder(dict[str, tuple[int, bytes]]).decode


def overrides(blob: bytes) -> dict[str, Clock]:
    """The ``_clocks`` map: the cells whose clock is not the base."""
    return _decode(blob)


def compress_cells(
    cells: Mapping[str, Any], names: Iterable[str], stored: tuple[Clock, Mapping[str, Clock]] | None = None
) -> tuple[int, bytes, bytes | None]:
    """(hlc, site, overrides) for a row: the clocks of ``cells``, and for the
    ``names`` not among them the ``stored`` (base, overrides) read with the row.
    The base is the clock of the row's ``_deleted`` cell: the write that made
    the row live (or dead) usually wrote most of its cells too, and finding it
    costs no counting."""
    base = cells[DELETED]
    hlc, site = base[1], base[2]
    extra = {}
    for name in names:
        cell = cells.get(name)
        if cell is not None:
            if cell[1] != hlc or cell[2] != site:
                extra[name] = (cell[1], cell[2])
        elif stored is not None:
            clock = stored[1].get(name, stored[0])
            if clock[0] != hlc or clock[1] != site:
                extra[name] = clock
    return hlc, site, (_encode(extra) if extra else None)
