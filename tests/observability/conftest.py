"""Fixtures for the observability tests: a second connection to watch the file."""

from __future__ import annotations

import time
from typing import Callable

import apsw
import pytest


class Reader:
    """A separate connection to the replica file: sees only committed rows,
    as another process would."""

    def __init__(self, path: str):
        self.conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)

    def count(self, table: str = "observability_events", where: str = "1") -> int:
        return self.conn.execute(f"select count(*) from {table} where {where}").fetchone()[0]

    def wait_for(self, condition: Callable[[], bool], *, timeout: float = 20.0) -> bool:
        """Poll until ``condition`` holds; a deadline, not a timing assertion."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return condition()


@pytest.fixture
def reader(store, replica_path):
    opened = Reader(replica_path)
    yield opened
    opened.conn.close()
