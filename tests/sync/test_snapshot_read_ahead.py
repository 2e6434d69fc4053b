"""The server reads the chunk after each snapshot chunk ahead, and hands it
only to the reader of the chunk before it: another snapshot of the same shape
that asks for the same ids (a client resuming, or another client whose
position may be newer than the read ahead) reads them afresh."""

from __future__ import annotations

import asyncio

import pytest

from syncstore.core import protocol as p
from syncstore.core import shapes as sh
from syncstore_server.store import open_store

pytestmark = pytest.mark.postgres


def test_a_chunk_read_ahead_goes_only_to_the_reader_of_the_chunk_before(sync_server, tenant, replicas):
    writer = replicas("writer")
    ids = sorted(writer.insert_many("tasks", [{"title": f"task {i}"} for i in range(6)]))
    token = sync_server.token(tenant)
    writer.sync(sync_server.url, token=token)
    shape = sh.check_shape(p.Shape("tasks"))
    before = writer.tasks.get(ids[4]).title

    async def run() -> None:
        async with open_store(sync_server.database_url) as store:
            first, position, exhausted = await store.read_snapshot(tenant, shape, "", limit=3, position=True)
            assert [r.id for r in first.row_changes()] == ids[:3] and not exhausted
            await asyncio.gather(*store._read_ahead.values())  # the next chunk is read, before the edit below
            await asyncio.to_thread(edit)
            resumed, _, _ = await store.read_snapshot(tenant, shape, str(first.last_id), limit=3)
            ahead, _, done = await store.read_snapshot(tenant, shape, first.last_id, limit=3)
            assert done and [r.id for r in ahead.row_changes()] == ids[3:]
            titles = {r.id: r.cells["title"][0] for r in resumed.row_changes()}
            assert titles[ids[4]] == "edited"  # read afresh, after the edit
            assert {r.id: r.cells["title"][0] for r in ahead.row_changes()}[ids[4]] == before

    def edit() -> None:
        writer.tasks.update(ids[4], title="edited")
        writer.sync(sync_server.url, token=token)

    asyncio.run(run())
