"""The fingerprint of a pushed change: whether the change a server merged at a
sequence number of a site is the one a replica file holds there.

A copy of a replica file (or the file restored from an older backup) has the
same site id as the original, and after the copy each writes its own changes
under the same sequence numbers; the server would take whichever came first
and skip the other's as "already merged". The server keeps the fingerprint
of the last change it merged for each site and says it in ``Welcome``; a
replica whose own change at that sequence differs, and the server when a
push's change at its acked sequence differs, know the file is not the one
the server has been merging. The change's clock stamp, table and row id are
enough: two files write the same row in the same clock tick at the same
sequence number only by accident, and the values are left out so that how a
client encodes them never matters.
"""

from __future__ import annotations

import hashlib

SIZE = 8  # bytes


def change_fingerprint(hlc: int, table: str, row_id: str) -> bytes:
    text = f"{hlc}:{table}:{row_id}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=SIZE).digest()
