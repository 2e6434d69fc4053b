"""Inserting many validated rows with change capture, a statement per batch.

:meth:`Replica.insert_many` validates and writes one row at a time (three
statements per row); an export of 10,000 tasks holds some 200,000 rows, and
per-row statements would dominate the import. This writes a batch with two
``executemany`` calls (the rows, then their change log entries) and leaves the
replica exactly as ``insert_many`` would: the same table rows, the same log
entries (one per row, with every column and ``_deleted = 0``), the same
sequence numbers and commit notes. ``tests/legacy/test_bulk.py`` holds it to
that.

It works inside the replica's own transaction bookkeeping (sequence counter,
transaction number, notes), which :class:`Replica` keeps private; this module
is the one place that reaches in, and only for inserts of rows that are new
(no row and no tombstone with the id: the caller checked).
"""

from __future__ import annotations

from typing import Any, Sequence

import apsw

from syncstore import schema
from syncstore.errors import ValidationError
from syncstore.replica import clocks
from syncstore.replica.store import DELETED, Change, Replica

_LOG = "insert into _ss_changes (seq, tx, tbl, pk, hlc, cols, seen) values (?, ?, ?, ?, ?, ?, ?)"


def insert_rows(store: Replica, table: str, rows: Sequence[dict[str, Any]], stamps: Sequence[int]) -> None:
    """Insert ``rows`` (canonical, every column present) of ``table``, row ``i``
    stamped ``stamps[i]``. Must run inside ``store.transaction()``."""
    if not rows:
        return
    if len(rows) != len(stamps):
        raise ValueError("one stamp per row")
    store._require_tx()
    tbl = schema.table(table)
    columns = store._sql[table].columns
    if set(rows[0]) - {DELETED} != set(columns):
        raise ValidationError("a bulk row must hold every column", table=table)
    site = store.site_id
    conn = store.connection
    try:
        conn.executemany(
            store._sql[table].insert,
            [(*[row[c] for c in columns], stamp, site, None) for row, stamp in zip(rows, stamps)],
        )
    except apsw.ConstraintError as exc:
        raise ValidationError(f"a row with one of these ids already exists ({exc})", table=tbl.name, field="id") from None
    tx = store._tx
    first = store._seq + 1
    entries = []
    for offset, (row, stamp) in enumerate(zip(rows, stamps)):
        entries.append((first + offset, tx, table, row["id"], stamp, clocks.encode_values({**row, DELETED: 0}), None))
    conn.executemany(_LOG, entries)
    store._seq += len(rows)
    store._tx_used = True
    store._notes.extend(Change(table, row["id"], "insert", columns, "local") for row in rows)
