"""Searching everything a replica would sync for one string.

Used to prove that a secret never reached synced data: every column of every
synced table (hidden clock columns included), every entry of the change log
decoded value by value as well as byte for byte, and the tombstones. Local-only
tables (such as ``local_secrets``) are not synced and not searched.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from syncstore import schema
from syncstore.replica import clocks
from syncstore.replica.store import Replica


class Found(NamedTuple):
    table: str  # a synced table, "_ss_changes" or "_ss_tombstones"
    row: str  # the row id, or the change log sequence number
    column: str


def _contains(value: Any, needle: str, raw: bytes) -> bool:
    if isinstance(value, str):
        return needle in value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return raw in bytes(value)
    if isinstance(value, dict):
        return any(_contains(k, needle, raw) or _contains(v, needle, raw) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_contains(v, needle, raw) for v in value)
    return False


def find_in_synced_data(store: Replica, needle: str) -> list[Found]:
    """Every place where ``needle`` occurs in what this replica syncs."""
    if not needle:
        raise ValueError("search for a non-empty string")
    raw = needle.encode()
    conn = store.connection
    found: list[Found] = []
    for name, tbl in schema.TABLES.items():
        columns = [*tbl.column_names, "_hlc", "_site", "_clocks"]  # id comes first
        for row in conn.execute(f"select {', '.join(columns)} from {name}"):
            found.extend(Found(name, row[0], col) for col, value in zip(columns, row) if _contains(value, needle, raw))
    for seq, tbl, pk, cols, seen in conn.execute("select seq, tbl, pk, cols, seen from _ss_changes"):
        if raw in cols or raw in (seen or b"") or needle in tbl or needle in pk:
            found.append(Found("_ss_changes", str(seq), "raw"))
            continue
        for column, value in clocks.decode_values(cols).items():
            if _contains(value, needle, raw):
                found.append(Found("_ss_changes", str(seq), column))
    for tbl, pk in conn.execute("select tbl, pk from _ss_tombstones"):
        if needle in tbl or needle in pk:
            found.append(Found("_ss_tombstones", f"{tbl}/{pk}", "pk"))
    return found
