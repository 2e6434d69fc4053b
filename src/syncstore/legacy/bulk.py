"""Inserting the import's new rows in batches, each row with its own stamp.

An export of 10,000 tasks holds some 200,000 rows. The mapping has already
made every value canonical (``tests/legacy/test_mapping.py`` holds it to
that), so the rows go through ``Replica.insert_many`` with ``checked=True``:
two ``executemany`` calls a batch (the rows, then their change log entries),
leaving the replica exactly as a checked ``insert_many`` of the same rows
would (``tests/legacy/test_bulk.py``).
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

from syncstore import schema
from syncstore.errors import ReplicaError, ValidationError
from syncstore.replica.store import Replica


def insert_rows(store: Replica, table: str, rows: Sequence[dict[str, Any]], stamps: Sequence[int]) -> None:
    """Insert ``rows`` (canonical, every column present) of ``table``, row ``i``
    stamped ``stamps[i]``. Must run inside ``store.transaction()``: the import
    is one transaction, whatever the number of batches."""
    if not store.in_transaction:
        raise ReplicaError(f"{store.path}: the import writes inside a transaction")
    # Given as value tuples in column order, the other form insert_many takes:
    # it then skips a generic mapping check per row (a tenth of a second for
    # 200,000 rows). The rows must still hold every column and only those.
    columns = schema.table(table).column_names
    values = operator.itemgetter(*columns)
    width = len(columns)
    try:
        tuples = [values(row) for row in rows if len(row) == width]
    except KeyError:
        tuples = []
    if len(tuples) != len(rows):
        raise ValidationError("a checked row must hold every column, and only those", table=table)
    store.insert_many(table, tuples, hlcs=stamps, checked=True)
