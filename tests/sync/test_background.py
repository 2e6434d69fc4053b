"""Background sync against a real server: live changes, status, reconnects, stopping."""

from __future__ import annotations

import threading

import pytest

from syncstore.errors import AuthError, SyncError

from .conftest import replica_rows, server_rows

pytestmark = pytest.mark.postgres

WAIT = 30.0  # generous upper bounds: the tests wait on events, never on a fixed time


def remote_arrival(store, row_id: str) -> threading.Event:
    """Set when a remote change to ``row_id`` lands in ``store``."""
    arrived = threading.Event()

    def listen(changes):
        if any(c.origin == "remote" and c.id == row_id for c in changes):
            arrived.set()

    store.subscribe("tasks", listen)
    return arrived


def test_a_write_reaches_a_connected_replica_live(sync_server, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    token = sync_server.token(tenant)
    with a.start_sync(sync_server.url, token=token) as ha, b.start_sync(sync_server.url, token=token) as hb:
        assert ha.wait_synced(WAIT) and hb.wait_synced(WAIT)
        status = a.sync_status()
        assert status.running and status.connected and status.tenant == tenant

        task = a.tasks.create("live")
        arrived = remote_arrival(b, task.id)
        assert arrived.wait(WAIT)  # b's listeners hear it, though b's sync runs on its own connection
        assert b.tasks.get(task.id).title == "live"

        back = remote_arrival(a, task.id)
        b.tasks.update(task.id, status="completed")
        assert back.wait(WAIT)
        assert a.tasks.get(task.id).status == "completed"
        assert hb.wait_synced(WAIT) and b.sync_status().pending_changes == 0
    assert not ha.running and not a.sync_status().running and not a.sync_status().connected


def test_the_change_log_is_the_offline_queue_across_a_server_restart(sync_server, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    token = sync_server.token(tenant)
    ha = a.start_sync(sync_server.url, token=token, backoff_base=0.05, backoff_max=0.5)
    assert ha.wait_synced(WAIT)
    connects = ha.connects

    sync_server.stop()
    written = [a.tasks.create(f"while the server is away {i}") for i in range(5)]
    assert a.sync_status().pending_changes >= 5
    sync_server.start()

    assert ha.wait_synced(WAIT)
    assert ha.connects > connects  # it reconnected by itself
    assert a.sync_status().pending_changes == 0
    held = server_rows(sync_server.database_url, tenant)
    assert {t.id for t in written} <= set(held)
    ha.stop()
    b.sync(sync_server.url, token=token)
    assert replica_rows(b) == replica_rows(a)


def test_a_refused_token_stops_the_background_sync_with_the_reason(sync_server, tenant, replicas):
    a = replicas()
    handle = a.start_sync(sync_server.url, token="not-a-token", backoff_base=0.05)
    assert not handle.wait_synced(WAIT)  # returns once the thread has given up
    assert isinstance(handle.error, AuthError)
    assert not handle.running
    status = a.sync_status()
    assert status.last_error and "not-a-token" not in status.last_error


def test_only_one_background_sync_per_store(sync_server, tenant, replicas):
    a = replicas()
    with a.start_sync(sync_server.url, token=sync_server.token(tenant)):
        with pytest.raises(SyncError):
            a.start_sync(sync_server.url, token=sync_server.token(tenant))


def test_an_in_memory_replica_cannot_sync(sync_server, tenant):
    import syncstore

    with syncstore.open(":memory:") as store:
        with pytest.raises(SyncError):
            store.sync(sync_server.url, token=sync_server.token(tenant))
