"""Inserting the import's new rows in batches, each row with its own stamp.

An export of 10,000 tasks holds some 200,000 rows. The mapping has already
made every value canonical (``tests/legacy/test_mapping.py`` holds it to
that), so the rows go through ``Replica.insert_many`` with ``checked=True``:
two ``executemany`` calls a batch (the rows, then their change log entries),
leaving the replica exactly as a checked ``insert_many`` of the same rows
would (``tests/legacy/test_bulk.py``).
"""

from __future__ import annotations

from typing import Any, Sequence

from syncstore.errors import ReplicaError
from syncstore.replica.store import Replica


def insert_rows(store: Replica, table: str, rows: Sequence[dict[str, Any]], stamps: Sequence[int]) -> None:
    """Insert ``rows`` (canonical, every column present) of ``table``, row ``i``
    stamped ``stamps[i]``. Must run inside ``store.transaction()``: the import
    is one transaction, whatever the number of batches."""
    if not store.in_transaction:
        raise ReplicaError(f"{store.path}: the import writes inside a transaction")
    store.insert_many(table, rows, hlcs=stamps, checked=True)
