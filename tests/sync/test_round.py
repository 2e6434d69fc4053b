"""One sync round against a real server and PostgreSQL: offline edits, acks, rejections, tokens."""

from __future__ import annotations

import pytest

from syncstore.core import merge
from syncstore.errors import AuthError, SyncError
from syncstore.sync import list_conflicts, list_rejected, resolve_conflict

from .conftest import RunningServer, replica_rows, server_acked, server_log_count, server_rows

pytestmark = pytest.mark.postgres


def test_offline_edits_reach_the_server_and_the_other_replica(sync_server, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    # Written with no server anywhere: the change log keeps them.
    first = a.tasks.create("written offline", priority="high")
    second = a.tasks.create("also offline")
    a.tasks.update(first.id, status="in_progress")
    a.tasks.delete(second.id)
    assert a.sync_status().pending_changes == 4

    token = sync_server.token(tenant)
    result = a.sync(sync_server.url, token=token)
    assert result.pushed == 4 and result.rejected == 0
    assert server_rows(sync_server.database_url, tenant) == replica_rows(a)

    heard = []
    b.subscribe("tasks", heard.append)
    b.sync(sync_server.url, token=token)
    assert replica_rows(b) == replica_rows(a)
    assert b.tasks.get(first.id).status == "in_progress" and b.tasks.find(second.id) is None
    assert any(change.origin == "remote" and change.id == first.id for batch in heard for change in batch)


def test_acks_give_read_your_writes(sync_server, tenant, replicas):
    a = replicas()
    for i in range(5):
        a.tasks.create(f"task {i}")
    token = sync_server.token(tenant)
    a.sync(sync_server.url, token=token)
    status = a.sync_status()
    assert status.acked_seq == status.last_seq == 5
    assert status.pending_changes == 0 and status.tenant == tenant and status.last_error is None
    # The ack is the server's durable record, not the client's hope.
    assert server_acked(sync_server.database_url, tenant, a.site_id) == 5
    # Nothing pending: another round pushes nothing and merges nothing twice.
    assert a.sync(sync_server.url, token=token).pushed == 0
    assert server_log_count(sync_server.database_url, tenant, a.site_id) == 5


def test_a_rejected_push_is_kept_shown_and_blocks_nothing(sync_database, tenant, replicas):
    # A server that takes at most 5 changes per transaction: a bigger local
    # transaction is valid here and refused there, for good.
    strict = RunningServer(sync_database, max_tx_changes=5)
    try:
        a, b = replicas("a"), replicas("b")
        token = strict.token(tenant)
        b.tasks.create("from b")
        b.sync(strict.url, token=token)

        good = a.tasks.create("fine")
        big = a.insert_many("tasks", [{"title": f"one of many {i}"} for i in range(8)])
        after = a.tasks.create("written after the big one")
        result = a.sync(strict.url, token=token)
        held = server_rows(sync_database, tenant)
    finally:
        strict.close()

    assert result.rejected == 1
    (rejected,) = list_rejected(a)
    assert [c.id for c in rejected.changes] == big and rejected.code and rejected.message
    assert good.id in held and after.id in held and not set(big) & set(held)  # later changes went through
    assert a.sync_status().pending_changes == 0 and a.sync_status().rejected == 1
    assert "from b" in {t.title for t in a.tasks.list()}  # downloads were not held back


def test_a_forged_token_changes_nothing_and_is_remembered(sync_server, tenant, replicas):
    a = replicas()
    a.tasks.create("secret plans")
    forged = sync_server.token(tenant)[:-4] + "AAAA"
    with pytest.raises(AuthError) as exc:
        a.sync(sync_server.url, token=forged)
    assert forged not in str(exc.value)
    status = a.sync_status()
    assert status.pending_changes == 1 and status.acked_seq == 0
    assert status.last_error and forged not in status.last_error
    assert server_rows(sync_server.database_url, tenant) == {}


def test_no_server_is_a_sync_error_and_the_queue_stays(replicas, tenant):
    a = replicas()
    a.tasks.create("offline")
    with pytest.raises(SyncError):
        a.sync("ws://127.0.0.1:9", token="t", timeout=5)
    assert a.sync_status().pending_changes == 1
    assert "127.0.0.1:9" in a.sync_status().last_error


def test_a_replica_never_mixes_two_tenants(sync_server, tenant, replicas):
    a = replicas()
    a.sync(sync_server.url, token=sync_server.token(tenant))
    with pytest.raises(SyncError) as exc:
        a.sync(sync_server.url, token=sync_server.token(tenant + "x"))
    assert exc.value.code == "tenant_mismatch"


def test_conflicts_arrive_with_the_transaction_and_resolve_by_a_write(sync_server, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    token = sync_server.token(tenant)
    task = a.tasks.create("shared")
    a.sync(sync_server.url, token=token)
    b.sync(sync_server.url, token=token)

    a.tasks.update(task.id, title="title from a")
    b.tasks.update(task.id, title="title from b")  # neither has seen the other's
    # Both may stamp the same millisecond; the merge rule decides, as everywhere.
    stamp = {s: merge.Cell(None, s.changes()[-1].hlc, s.site_id) for s in (a, b)}
    winner, loser = (b, a) if merge.wins(stamp[b], stamp[a]) else (a, b)
    win_title, lose_title = (f"title from {'b' if s is b else 'a'}" for s in (winner, loser))
    a.sync(sync_server.url, token=token)
    b.sync(sync_server.url, token=token)
    # b's push made the conflict; its round waited for that log entry (Ack.log_seq).
    assert [c.column for c in list_conflicts(b) if c.column == "title"] == ["title"]
    a.sync(sync_server.url, token=token)
    assert a.tasks.get(task.id).title == b.tasks.get(task.id).title == win_title

    for store in (a, b):
        titles = [c for c in list_conflicts(store) if c.column == "title"]
        assert len(titles) == 1
        assert titles[0].winner_value == win_title and titles[0].loser_value == lose_title
    conflict = next(c for c in list_conflicts(loser) if c.column == "title")

    # The losing side insists: keeping the loser is a new write, which syncs.
    resolved = resolve_conflict(loser, conflict.id, keep="loser")
    assert resolved.resolution == "loser" and not resolved.reported
    assert loser.tasks.get(task.id).title == lose_title
    loser.sync(sync_server.url, token=token)
    winner.sync(sync_server.url, token=token)
    assert winner.tasks.get(task.id).title == lose_title
    assert list_conflicts(loser, include_resolved=True, table="tasks", row_id=task.id)[0].row_id == task.id
    assert [c.reported for c in list_conflicts(loser, include_resolved=True) if c.id == conflict.id] == [True]
    import psycopg

    with psycopg.connect(sync_server.database_url) as conn:
        (resolved_at,) = conn.execute("select resolved_at from syncstore.conflicts where id = %s", (conflict.id,)).fetchone()
    assert resolved_at is not None


def test_a_transaction_larger_than_a_batch_goes_whole(sync_server, tenant, replicas):
    a = replicas()
    ids = a.insert_many("tasks", [{"title": f"row {i}"} for i in range(10)])  # one local transaction
    a.tasks.create("after it")
    result = a.sync(sync_server.url, token=sync_server.token(tenant), max_batch=3)
    assert result.pushed == 11 and result.rejected == 0
    assert set(ids) <= set(server_rows(sync_server.database_url, tenant))


def test_pushes_stay_under_the_servers_frame_limit(sync_database, tenant, replicas):
    small = RunningServer(sync_database, max_frame=4096)
    try:
        a = replicas()
        for i in range(12):
            a.tasks.create(f"task {i}", description="d" * 600)  # twelve transactions, ~7 KB together
        result = a.sync(small.url, token=small.token(tenant))
        assert result.pushed == 12
        assert len(server_rows(sync_database, tenant)) == 12

        a.insert_many("tasks", [{"title": f"big {i}", "description": "d" * 600} for i in range(10)])
        with pytest.raises(SyncError) as exc:
            a.sync(small.url, token=small.token(tenant))
        assert exc.value.code == "too_large" and "cannot be split" in str(exc.value)
    finally:
        small.close()
