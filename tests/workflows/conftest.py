"""Fixtures for the workflow tests: stores with their own step registries, and sync by hand."""

from __future__ import annotations

import sys

import pytest

import syncstore
from syncstore.core.merge import Cell
from syncstore.replica.store import RemoteChange
from syncstore.workflows import Registry, Workflows


def replicate(source: syncstore.Store, target: syncstore.Store, after: int = 0) -> int:
    """Apply ``source``'s local changes after ``after`` to ``target`` as a sync would;
    returns the new cursor. Each change travels as cells stamped with its writer's
    clock and site, exactly what ``apply_remote`` merges."""
    changes = source.changes(after=after)
    if not changes:
        return after
    target.apply_remote(
        RemoteChange(c.table, c.id, {name: Cell(value, c.hlc, source.site_id) for name, value in c.values.items()})
        for c in changes
    )
    return changes[-1].seq


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def flows(store, registry) -> Workflows:
    return Workflows(store, registry=registry, lease_seconds=5.0)


@pytest.fixture
def python() -> str:
    return sys.executable
