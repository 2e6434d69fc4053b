"""A replica whose clock once ran ahead: its changes wait instead of being
rejected for good, it refuses new local writes the server would refuse, and
re-stamping (after the machine's clock is corrected) sends them on."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from syncstore.cli.main import cli
from syncstore.core import hlc
from syncstore.core import protocol as p
from syncstore.errors import ClockDriftError, SyncClockDriftError, SyncError
from syncstore.sync import list_conflicts, restamp_pending
from syncstore.sync.state import SyncState
from syncstore.sync.transport import Received, Transport

from .conftest import RunningServer, replica_rows, server_rows

pytestmark = pytest.mark.postgres

WAIT = 30.0
HOUR_MS = 3_600_000


def write_while_ahead(store, ahead_ms: int, titles: list[str]) -> list[str]:
    """Writes made while the machine's clock ran ``ahead_ms`` ahead, then the
    clock is corrected (the replica's clock stays ahead, as a real one does)."""
    store.clock._now = lambda: hlc.wall_ms() + ahead_ms
    try:
        return [store.tasks.create(title).id for title in titles]
    finally:
        store.clock._now = hlc.wall_ms


def rejections(database_url: str, tenant: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("select count(*) from syncstore.rejections where tenant = %s", (tenant,)).fetchone()[0]


def server_conflicts(database_url: str, tenant: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("select count(*) from syncstore.conflicts where tenant = %s", (tenant,)).fetchone()[0]


def wait_until(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_changes_stamped_ahead_wait_and_go_out_after_restamp(sync_server, tenant, replicas):
    url, token = sync_server.url, sync_server.token(tenant)
    a, b = replicas("a"), replicas("b")
    before = a.tasks.create("written while the clock was right").id
    ahead = write_while_ahead(a, HOUR_MS, ["ahead 1", "ahead 2"])
    b.tasks.create("from b")
    b.sync(url, token=token)

    with pytest.raises(SyncClockDriftError) as held:
        a.sync(url, token=token)
    assert held.value.retryable and held.value.ahead_ms > HOUR_MS - 60_000
    assert "syncstore sync restamp" in str(held.value)
    # What came before was merged, what came after waits: nothing rejected, nothing lost.
    assert set(server_rows(sync_server.database_url, tenant)) == {before, *replica_rows(b)} - set(ahead) | {before}
    assert not set(ahead) & set(server_rows(sync_server.database_url, tenant))
    assert rejections(sync_server.database_url, tenant) == 0
    status = a.sync_status()
    assert status.pending_changes == 2 and status.rejected == 0
    assert status.clock_ahead_ms > HOUR_MS - 60_000 and status.max_drift_ms == hlc.DEFAULT_MAX_DRIFT_MS
    assert set(replica_rows(b)) <= set(replica_rows(a))  # downloads went on
    # A new local write would be refused by the server: it is refused here, clearly.
    with pytest.raises(ClockDriftError) as refused:
        a.tasks.create("refused")
    assert "ahead of the sync server's time" in str(refused.value)
    shown = CliRunner().invoke(cli, ["--db", a.path, "sync", "status"])
    assert "syncstore sync restamp" in shown.output

    done = restamp_pending(a)
    assert done.changes == done.pending == 2 and done.rows == 2
    assert done.clock_after < done.clock_before
    assert a.sync_status().clock_ahead_ms == 0
    after = a.tasks.create("after the restamp").id  # local writes go through again
    a.sync(url, token=token)
    b.sync(url, token=token)
    assert replica_rows(a) == replica_rows(b) == server_rows(sync_server.database_url, tenant)
    for row_id in (*ahead, after):
        assert a.cells("tasks", row_id) == b.cells("tasks", row_id)  # the clocks too
    assert a.sync_status().pending == 0 and rejections(sync_server.database_url, tenant) == 0


def test_restamp_keeps_what_a_later_write_saw(sync_server, tenant, replicas):
    """An edit of a row inserted while ahead saw the insert's stamp; both are
    re-stamped, and the edit's ``seen`` with them, so the server records no
    conflict that never happened."""
    url, token = sync_server.url, sync_server.token(tenant)
    a = replicas()
    a.sync(url, token=token)
    a.clock._now = lambda: hlc.wall_ms() + HOUR_MS
    try:
        task = a.tasks.create("first")
        a.tasks.update(task.id, title="second")
        a.tasks.update(task.id, status="in_progress")
    finally:
        a.clock._now = hlc.wall_ms
    with pytest.raises(SyncClockDriftError):
        a.sync(url, token=token)
    assert restamp_pending(a).changes == 3
    a.sync(url, token=token)
    assert server_conflicts(sync_server.database_url, tenant) == 0 and list_conflicts(a) == []
    assert server_rows(sync_server.database_url, tenant)[task.id]["title"] == "second"
    assert replica_rows(a) == server_rows(sync_server.database_url, tenant)


def test_the_background_sync_holds_them_connected_and_sends_them_after_restamp(sync_server, tenant, replicas):
    url, token = sync_server.url, sync_server.token(tenant)
    a, b = replicas("a"), replicas("b")
    ahead = write_while_ahead(a, HOUR_MS, ["ahead"])
    with a.start_sync(url, token=token, poll_interval=0.1) as handle:
        assert wait_until(lambda: a.sync_status().clock_ahead_ms > 0)
        # The hold is recorded while the welcome is handled, a moment before
        # the handle counts the connection as open.
        assert wait_until(lambda: handle.running and handle.connected)
        # Downloads go on while the push waits.
        fresh = b.tasks.create("from b").id
        b.sync(url, token=token)
        assert wait_until(lambda: a.tasks.get(fresh) is not None)
        assert not set(ahead) & set(server_rows(sync_server.database_url, tenant))
        connects = handle.connects
        restamp_pending(a)
        assert handle.wait_synced(WAIT)
        assert handle.connects == connects  # sent on the same connection
    assert set(ahead) <= set(server_rows(sync_server.database_url, tenant))


def test_restamp_refuses_while_the_machine_clock_still_runs_ahead(replicas):
    a = replicas()
    write_while_ahead(a, HOUR_MS, ["ahead"])
    now = hlc.wall_ms()
    # The last connection measured this machine's clock an hour ahead of the server's.
    SyncState(a).keep_server_time(hlc.ServerTime(server_ms=now - HOUR_MS, local_ms=now, max_drift_ms=60_000))
    stamps = [c.hlc for c in a.changes()]
    with pytest.raises(ClockDriftError) as still:
        restamp_pending(a)
    assert "correct it first" in str(still.value)
    assert [c.hlc for c in a.changes()] == stamps  # nothing changed
    # Once the clock was set back (now earlier than that measurement), it goes ahead.
    assert restamp_pending(a, now_ms=now - HOUR_MS).changes == 1


class WithoutCap(Transport):
    """The server's Welcome without its drift cap, as an older server's: the
    client assumes the default cap and pushes what this server defers."""

    def get(self, timeout: float | None) -> Any:
        item = super().get(timeout)
        if isinstance(item, Received) and isinstance(item.message, p.Welcome):
            return Received(p.Welcome(**{**{f: getattr(item.message, f) for f in item.message.__struct_fields__}, "max_drift_ms": 0}))
        return item


@pytest.fixture(scope="module")
def strict_server(sync_database):
    running = RunningServer(sync_database, max_drift_ms=5_000)
    try:
        yield running
    finally:
        running.close()


def test_a_push_the_server_defers_waits_on_the_open_connection(strict_server, tenant, replicas):
    url, token = strict_server.url, strict_server.token(tenant)
    a, b = replicas("a"), replicas("b")
    before = a.tasks.create("on time").id
    ahead = write_while_ahead(a, 30_000, ["30 s ahead: within the default cap, past this server's"])
    b.tasks.create("from b")
    b.sync(url, token=token)
    with pytest.raises(SyncError) as held:
        a.sync(url, token=token, transport_factory=WithoutCap)
    assert held.value.code == "clock_drift" and held.value.retryable
    held_rows = set(server_rows(strict_server.database_url, tenant))
    assert before in held_rows and not set(ahead) & held_rows
    assert rejections(strict_server.database_url, tenant) == 0
    assert set(replica_rows(b)) <= set(replica_rows(a))  # the connection stayed up for downloads
    assert a.sync_status().pending_changes == 1
