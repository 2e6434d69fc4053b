"""Per-column clocks in a server row's hidden columns: the replica's scheme.

A row keeps its most common clock in ``_hlc``/``_site`` (the base) and, in
``_clocks``, a MessagePack map ``{column: [hlc, site]}`` of the cells whose
clock differs. A row written by one insert needs no map at all; each later
update adds the columns it wrote. A cell nobody has written holds the
column's default at the zero clock, which loses to every real write.
"""

from __future__ import annotations

from typing import Mapping

import msgspec

Clock = tuple[int, bytes]
ZERO: Clock = (0, b"")

_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.Decoder(dict[str, tuple[int, bytes]]).decode


def expand(names: tuple[str, ...], base_hlc: int, base_site: bytes, blob: bytes | None) -> dict[str, Clock]:
    """The clock of every named cell."""
    base = (base_hlc, bytes(base_site))
    if not blob:
        return dict.fromkeys(names, base)
    extra = _decode(blob)
    return {name: extra.get(name, base) for name in names}


def compress(clocks: Mapping[str, Clock]) -> tuple[int, bytes, bytes | None]:
    """Choose the most common clock as the base; return (hlc, site, overrides)."""
    counts: dict[Clock, int] = {}
    for clock in clocks.values():
        counts[clock] = counts.get(clock, 0) + 1
    base = max(counts, key=counts.__getitem__)
    if len(counts) == 1:
        return base[0], base[1], None
    extra = {name: clock for name, clock in clocks.items() if clock != base}
    return base[0], base[1], _encode(extra)
