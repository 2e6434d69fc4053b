"""Conflict resolutions reach the server on the open connection, and count as
pending until they do."""

from __future__ import annotations

import time

import psycopg
import pytest

import syncstore
from syncstore.sync import list_conflicts, resolve_conflict

pytestmark = pytest.mark.postgres

WAIT = 30.0


def wait_until(predicate, timeout: float = WAIT) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def server_resolved(database_url: str, conflict_id: str) -> bool:
    with psycopg.connect(database_url) as conn:
        (resolved_at,) = conn.execute(
            "select resolved_at from syncstore.conflicts where id = %s", (conflict_id,)
        ).fetchone()
    return resolved_at is not None


def make_conflict(url: str, token: str, a: syncstore.Store, b: syncstore.Store) -> str:
    """A title conflict that ``a`` holds a record of; its id."""
    task = a.tasks.create("shared")
    a.sync(url, token=token)
    b.sync(url, token=token)
    a.tasks.update(task.id, title="title from a")
    b.tasks.update(task.id, title="title from b")  # neither has seen the other's
    a.sync(url, token=token)
    b.sync(url, token=token)
    a.sync(url, token=token)
    (conflict,) = [c for c in list_conflicts(a) if c.column == "title"]
    return conflict.id


def test_a_resolution_made_while_connected_is_reported_on_that_connection(sync_server, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    url, token = sync_server.url, sync_server.token(tenant)
    conflict_id = make_conflict(url, token, a, b)
    with a.start_sync(url, token=token) as handle:
        assert handle.wait_synced(WAIT)
        connects = handle.connects
        resolve_conflict(a, conflict_id, keep="loser")
        assert wait_until(lambda: server_resolved(sync_server.database_url, conflict_id))
        assert handle.wait_synced(WAIT)
        assert handle.connects == connects  # no reconnect was needed
        status = a.sync_status()
        assert status.connected and status.pending_resolutions == 0 and status.pending == 0
    assert [c.reported for c in list_conflicts(a, include_resolved=True) if c.id == conflict_id] == [True]


def test_a_resolution_made_by_another_connection_is_found_while_connected(sync_server, tenant, replicas):
    """Another process (here: another connection to the file, as the CLI's
    `syncstore conflicts resolve` is) resolves while the sync runs: its commit
    does not wake this store's sync thread, whose poll finds it."""
    a, b = replicas("a"), replicas("b")
    url, token = sync_server.url, sync_server.token(tenant)
    conflict_id = make_conflict(url, token, a, b)
    with a.start_sync(url, token=token, poll_interval=0.1) as handle:
        assert handle.wait_synced(WAIT)
        connects = handle.connects
        with syncstore.open(a.path) as other:
            resolve_conflict(other, conflict_id, keep="winner")
        assert wait_until(lambda: server_resolved(sync_server.database_url, conflict_id))
        assert handle.connects == connects


def test_unreported_resolutions_count_as_pending(sync_server, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    url, token = sync_server.url, sync_server.token(tenant)
    conflict_id = make_conflict(url, token, a, b)
    resolve_conflict(a, conflict_id, keep="loser")
    status = a.sync_status()
    assert status.pending_resolutions == 1
    assert status.pending == status.pending_changes + 1
    a.sync(url, token=token)  # the round waits until the server confirms it read the resolution
    status = a.sync_status()
    assert status.pending_resolutions == 0 and status.pending == 0
    assert server_resolved(sync_server.database_url, conflict_id)
