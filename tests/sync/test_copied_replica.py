"""A copied replica file is always detected, and nothing it wrote is lost: the
copy (whichever of the two files learns it second) takes a new site id, pushes
again under it every change the server did not merge as its own, and re-stamps
the cells those changes wrote, so every replica and PostgreSQL end equal, cell
for cell, clocks included. Real files copied on disk, a real server."""

from __future__ import annotations

import asyncio
import shutil

import pytest

import syncstore
from syncstore_server.store import open_store

from .conftest import replica_rows, server_rows

pytestmark = pytest.mark.postgres


def copy_file(store, path: str) -> None:
    store.connection.execute("pragma wal_checkpoint(truncate)")
    shutil.copy(store.path, path)


def server_cells(url: str, tenant: str, row_id: str, table: str = "tasks") -> dict:
    async def main():
        async with open_store(url) as store:
            return await store.cells(tenant, table, row_id)

    return asyncio.run(main())


def assert_equal_everywhere(url: str, tenant: str, *stores) -> None:
    expected = server_rows(url, tenant)
    for store in stores:
        assert replica_rows(store) == expected
    for row_id in expected:
        held = server_cells(url, tenant, row_id)
        for store in stores:
            assert store.cells("tasks", row_id) == held, row_id


def test_a_copy_that_wrote_more_than_the_original_pushed_loses_nothing(sync_server, tenant, replicas, tmp_path):
    """The server's acked sequence is inside the copy's log, so only the
    fingerprint of the change there tells: before, the copy's first changes
    were skipped as "already merged" (they were the original's)."""
    original = replicas("original")
    token = sync_server.token(tenant)
    original.tasks.create("before the copy")
    original.sync(sync_server.url, token=token)
    copy_path = str(tmp_path / "copy.db")
    copy_file(original, copy_path)
    theirs = [original.tasks.create(f"original {i}").id for i in range(3)]
    original.sync(sync_server.url, token=token)
    with syncstore.open(copy_path) as copy:
        assert copy.site_id == original.site_id
        mine = [copy.tasks.create(f"copy {i}").id for i in range(5)]  # past the server's acked sequence
        copy.tasks.update(mine[0], title="copy 0, edited")
        copy.sync(sync_server.url, token=token)
        rows = server_rows(sync_server.database_url, tenant)
        assert set(mine) | set(theirs) <= set(rows)  # before: the copy's first three were skipped as merged
        assert rows[mine[0]]["title"] == "copy 0, edited"
        assert copy.site_id != original.site_id  # the copy took a new site id
        rekeyed = copy.sync_status().rekeyed
        assert rekeyed is not None and "copy" in rekeyed
        assert copy.sync_status().pending_changes == 0
        # The original keeps its site and goes on syncing; both end equal to PostgreSQL.
        site = original.site_id
        original.tasks.create("original, later")
        copy.tasks.create("copy, later")
        for store in (original, copy, original):
            store.sync(sync_server.url, token=token)
        assert original.site_id == site
        assert_equal_everywhere(sync_server.database_url, tenant, original, copy)


def test_a_copy_that_wrote_less_than_the_original_pushed_takes_a_new_site(sync_server, tenant, replicas, tmp_path):
    """Before, this stopped the copy's sync for good (site_reused)."""
    original = replicas("original")
    token = sync_server.token(tenant)
    original.sync(sync_server.url, token=token)
    copy_path = str(tmp_path / "copy.db")
    copy_file(original, copy_path)
    for i in range(3):
        original.tasks.create(f"after the copy {i}")
    original.sync(sync_server.url, token=token)
    with syncstore.open(copy_path) as copy:
        row = copy.tasks.create("on the copy").id
        copy.sync(sync_server.url, token=token)
        assert row in server_rows(sync_server.database_url, tenant)
        assert copy.site_id != original.site_id
        original.sync(sync_server.url, token=token)
        copy.sync(sync_server.url, token=token)
        assert_equal_everywhere(sync_server.database_url, tenant, original, copy)


def test_a_replica_restored_from_an_older_backup_keeps_syncing_and_loses_nothing(sync_server, tenant, replicas, tmp_path):
    path = str(tmp_path / "agent.db")
    backup = str(tmp_path / "backup.db")
    token = sync_server.token(tenant)
    with syncstore.open(path) as store:
        early = store.tasks.create("early").id
        store.sync(sync_server.url, token=token)
        copy_file(store, backup)
        late = [store.tasks.create(f"late {i}").id for i in range(4)]
        store.sync(sync_server.url, token=token)
    shutil.copy(backup, path)  # restored: the late writes are gone from the file, not from the server
    for suffix in ("-wal", "-shm"):
        shutil.rmtree(path + suffix, ignore_errors=True)
    with syncstore.open(path) as store:
        after = store.tasks.create("after the restore").id
        store.sync(sync_server.url, token=token)  # before: site_reused, sync stopped for good
        rows = server_rows(sync_server.database_url, tenant)
        assert {early, after, *late} <= set(rows)
        assert set(replica_rows(store)) == set(rows)  # the late rows came back from the server
        other = replicas("other")
        other.sync(sync_server.url, token=token)
        store.tasks.update(after, title="edited after the restore")
        store.sync(sync_server.url, token=token)
        other.sync(sync_server.url, token=token)
        assert_equal_everywhere(sync_server.database_url, tenant, store, other)


def test_a_copy_syncing_while_the_original_keeps_writing_is_found_at_its_push(sync_server, tenant, replicas, tmp_path):
    """Both files connected at once under the same site id, each welcomed at
    the same acked sequence: the server finds the second one out when its
    push repeats a sequence number the first one's push took."""
    original = replicas("original")
    token = sync_server.token(tenant)
    original.tasks.create("shared")
    original.sync(sync_server.url, token=token)
    copy_path = str(tmp_path / "copy.db")
    copy_file(original, copy_path)
    with syncstore.open(copy_path) as copy:
        handle = original.start_sync(sync_server.url, token=token)
        try:
            theirs = [original.tasks.create(f"original {i}").id for i in range(5)]
            mine = [copy.tasks.create(f"copy {i}").id for i in range(5)]
            for store in (copy, original, copy):
                store.sync(sync_server.url, token=token)
        finally:
            handle.stop()
        original.sync(sync_server.url, token=token)
        copy.sync(sync_server.url, token=token)
        assert set(theirs) | set(mine) <= set(server_rows(sync_server.database_url, tenant))
        assert_equal_everywhere(sync_server.database_url, tenant, original, copy)
