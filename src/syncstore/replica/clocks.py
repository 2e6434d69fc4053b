"""Per-column clocks as kept in a synced row's hidden columns.

A row stores the clock of its insert in ``_hlc``/``_site`` (the base clock of
every column) and, in ``_clocks``, a MessagePack map ``{column: [hlc, site]}``
of the columns written since. Inserting costs no map at all; an update adds
the columns it wrote. ``_deleted`` is a column like the others: its clock on a
live row is the clock of the write that made the row live. A tombstone keeps
the deleted row's other cells whole (value, hlc, site).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

import msgspec

from syncstore.core.merge import Cell

Clock = tuple[int, bytes]
ZERO: Clock = (0, b"")  # older than any real write: a value nobody has written yet

_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.Decoder(dict[str, tuple[int, bytes]]).decode


def overrides(blob: bytes | None) -> dict[str, Clock]:
    return _decode(blob) if blob else {}


def column_clocks(columns: Iterable[str], base: Clock, blob: bytes | None) -> dict[str, Clock]:
    extra = overrides(blob)
    return {name: extra.get(name, base) for name in columns}


def clock_of(column: str, base: Clock, blob: bytes | None) -> Clock:
    if blob:
        found = overrides(blob).get(column)
        if found is not None:
            return found
    return base


def with_writes(blob: bytes | None, columns: Iterable[str], clock: Clock) -> bytes:
    """The ``_clocks`` value after writing ``columns`` at ``clock``."""
    extra = overrides(blob)
    for name in columns:
        extra[name] = clock
    return _encode(extra)


def compress(clocks: Mapping[str, Clock]) -> tuple[int, bytes, bytes | None]:
    """Choose the most common clock as the base; return (hlc, site, overrides)."""
    base = Counter(clocks.values()).most_common(1)[0][0]
    extra = {name: clock for name, clock in clocks.items() if clock != base}
    return base[0], base[1], (_encode(extra) if extra else None)


def encode_seen(seen: Mapping[str, Clock] | None) -> bytes | None:
    return _encode(seen) if seen else None


def decode_seen(blob: bytes | None) -> dict[str, Clock] | None:
    return _decode(blob) if blob else None


def encode_values(values: Mapping[str, Any]) -> bytes:
    return _encode(values)


_decode_values = msgspec.msgpack.Decoder(dict[str, Any]).decode
_decode_cells = msgspec.msgpack.Decoder(dict[str, tuple[Any, int, bytes]]).decode


def encode_cells(cells: Mapping[str, Any]) -> bytes | None:
    """A tombstone's kept cells: ``{column: [value, hlc, site]}``."""
    # Sorted, so that replicas holding the same cells hold the same bytes.
    return _encode({name: tuple(cells[name]) for name in sorted(cells)}) if cells else None


def decode_cells(blob: bytes | None) -> dict[str, Cell]:
    return {name: Cell(*cell) for name, cell in _decode_cells(blob).items()} if blob else {}


def decode_values(blob: bytes) -> dict[str, Any]:
    return _decode_values(blob)
