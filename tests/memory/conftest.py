"""Fixtures for the memory tests: vectors, a second replica, shipping changes between replicas."""

from __future__ import annotations

import numpy as np
import pytest

import syncstore
from syncstore.core.merge import Cell
from syncstore.replica.store import RemoteChange


def _ship(source: syncstore.Store, target: syncstore.Store, *, after: int = 0) -> int:
    logged = source.changes(after=after)
    target.apply_remote(
        [
            RemoteChange(c.table, c.id, {name: Cell(value, c.hlc, source.site_id) for name, value in c.values.items()})
            for c in logged
        ]
    )
    return logged[-1].seq if logged else after


@pytest.fixture
def ship():
    """``ship(source, target, after=0)``: apply source's logged changes to target as
    a sync would; returns the last sequence number shipped."""
    return _ship


@pytest.fixture
def other(tmp_path):
    """A second replica, as on another machine."""
    with syncstore.open(str(tmp_path / "other.db")) as opened:
        yield opened


@pytest.fixture
def unit():
    """``unit(dimensions=16)``: a random unit vector (seeded, so runs repeat)."""
    rng = np.random.default_rng(20240717)

    def make(dimensions: int = 16) -> np.ndarray:
        vector = rng.standard_normal(dimensions).astype(np.float32)
        return vector / np.linalg.norm(vector)

    return make
