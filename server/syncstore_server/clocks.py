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

from typing import Any, Mapping

import msgspec

from syncstore.core.merge import DELETED

Clock = tuple[int, bytes]

_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.Decoder(dict[str, tuple[int, bytes]]).decode


def overrides(blob: bytes) -> dict[str, Clock]:
    """The ``_clocks`` map: the cells whose clock is not the base."""
    return _decode(blob)


def compress_cells(cells: Mapping[str, Any]) -> tuple[int, bytes, bytes | None]:
    """(hlc, site, overrides) for a row's cells, taking the clock of its
    ``_deleted`` cell as the base: the write that made the row live (or dead)
    usually wrote most of its cells too, and finding it costs no counting."""
    base = cells[DELETED]
    hlc, site = base[1], base[2]
    extra = {name: (c[1], c[2]) for name, c in cells.items() if c[1] != hlc or c[2] != site}
    return hlc, site, (_encode(extra) if extra else None)
