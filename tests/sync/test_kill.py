"""Invariant 2 and 3 from the client's side: kill -9 of a syncing process loses nothing, doubles nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psycopg
import pytest

import syncstore

from .conftest import replica_rows, server_acked, server_log_count, server_rows

pytestmark = pytest.mark.postgres

PUSHER = textwrap.dedent(
    """
    import os, sys
    import syncstore
    store = syncstore.open(sys.argv[1])
    # One change per push and one push in flight: a long, slow push to kill in the middle of.
    store.sync(sys.argv[2], token=os.environ["SYNCSTORE_TOKEN"], timeout=300, max_batch=1, max_in_flight=1)
    print("finished", flush=True)
    """
)

WRITER = textwrap.dedent(
    """
    import sys
    import syncstore
    store = syncstore.open(sys.argv[1])
    for i in range(10_000):
        store.tasks.create(f"committed {i}")
        print(i, flush=True)  # after the commit returned
    """
)


def child(script: str, *args: str, token: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "SYNCSTORE_TOKEN": token}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_kill_9_mid_push_loses_nothing_and_doubles_nothing(sync_server, tenant, tmp_path):
    path = str(tmp_path / "pusher.db")
    total = 400
    with syncstore.open(path) as store:
        for i in range(total):
            store.tasks.create(f"task {i}")  # one local transaction each
        site = store.site_id

    proc = child(PUSHER, path, sync_server.url, token=sync_server.token(tenant))
    try:
        with psycopg.connect(sync_server.database_url, autocommit=True) as conn:
            query = "select coalesce(max(acked_seq), 0) from syncstore.site_acks where tenant = %s and site = %s"
            while conn.execute(query, (tenant, site)).fetchone()[0] < 5 and proc.poll() is None:
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    merged_at_kill = server_acked(sync_server.database_url, tenant, site)
    assert 5 <= merged_at_kill < total, "the kill must land in the middle of the push"

    with syncstore.open(path) as store:
        # What the dead process had recorded never claims more than the server has.
        assert store.sync_status().acked_seq <= merged_at_kill
        store.sync(sync_server.url, token=sync_server.token(tenant))
        assert store.sync_status().pending_changes == 0
        assert replica_rows(store) == server_rows(sync_server.database_url, tenant)
    assert len(server_rows(sync_server.database_url, tenant)) == total
    assert server_acked(sync_server.database_url, tenant, site) == total
    assert server_log_count(sync_server.database_url, tenant, site) == total  # each transaction merged once


def test_kill_9_right_after_commits_then_sync_pushes_every_committed_write(sync_server, tenant, tmp_path):
    path = str(tmp_path / "writer.db")
    proc = child(WRITER, path)
    try:
        confirmed = -1
        for line in proc.stdout:  # type: ignore[union-attr]
            confirmed = int(line)
            if confirmed >= 50:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()

    with syncstore.open(path) as store:
        titles = {t.title for t in store.tasks.list(limit=None)}
        assert {f"committed {i}" for i in range(confirmed + 1)} <= titles  # every confirmed commit survived
        store.sync(sync_server.url, token=sync_server.token(tenant))
        assert replica_rows(store) == server_rows(sync_server.database_url, tenant)
        assert len(titles) == store.sync_status().acked_seq
