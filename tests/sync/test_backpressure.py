"""A replica that applies slowly holds a bounded part of the server's stream:
the transport's queue fills, its reader stops reading, TCP flow control
reaches the server, and the server stops reading its log for that client.
Once the replica applies again, everything converges."""

from __future__ import annotations

import threading
import time

import pytest

from .conftest import RunningServer, replica_rows, server_rows

pytestmark = pytest.mark.postgres

WAIT = 60.0
ROWS = 400
BIG = "x" * 64 * 1024  # 400 rows of 64 KiB: a stream far larger than every buffer on the way


def wait_until(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def small_reads(sync_database):
    """A server reading its log 5 entries at a time: many frames per catch-up."""
    running = RunningServer(sync_database, log_read_limit=5)
    try:
        yield running
    finally:
        running.close()


def handler_of(server: RunningServer, site: bytes):
    for handler in list(server.server._handlers):
        if handler.session.site == site:
            return handler
    return None


def test_a_slow_replica_makes_the_server_wait_and_then_converges(small_reads, tenant, replicas):
    url, token = small_reads.url, small_reads.token(tenant)
    writer, slow = replicas("writer"), replicas("slow")
    slow.sync(url, token=token)  # live from the start of the (empty) log: it catches up by reading the log
    for i in range(ROWS):
        writer.tasks.create(f"task {i}", description=BIG)
    writer.sync(url, token=token, timeout=120)
    head = max(seq for (seq,) in _log_positions(small_reads, tenant))

    gate = threading.Event()
    applying = threading.Event()

    def stall(changes):  # the replica's first apply takes until the gate opens
        if not applying.is_set():
            applying.set()
            gate.wait(WAIT)

    slow.subscribe("tasks", stall)
    handle = slow.start_sync(url, token=token, max_queue=2, max_queue_bytes=256 * 1024)
    try:
        assert applying.wait(WAIT)
        # The server fills the socket and waits: bytes stay queued for this
        # client while its log position stays short of the head.
        assert wait_until(lambda: (h := handler_of(small_reads, slow.site_id)) is not None and h._queued > 0)
        handler = handler_of(small_reads, slow.site_id)
        transport = handle._connection._transport
        assert wait_until(lambda: transport.inbox.blocked > 0)  # the reader waited for room
        assert len(transport.inbox) <= 2
        assert handler.session.position < head
        assert handler._queued > 0
    finally:
        gate.set()
    assert handle.wait_synced(WAIT)
    handle.stop()
    assert replica_rows(slow) == replica_rows(writer) == server_rows(small_reads.database_url, tenant)
    assert len(replica_rows(slow)) == ROWS


def _log_positions(server: RunningServer, tenant: str):
    import psycopg

    with psycopg.connect(server.database_url) as conn:
        return conn.execute("select seq from syncstore.change_log where tenant = %s", (tenant,)).fetchall()
