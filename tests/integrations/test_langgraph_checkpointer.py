"""SyncstoreSaver beyond LangGraph's conformance suite: how it stores and syncs."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.checkpoint.base import empty_checkpoint

import syncstore.aio
from syncstore.errors import ValidationError
from syncstore.integrations.langgraph import SyncstoreSaver, keys

BLOBS = "langgraph_checkpoint_blobs"


def put(saver, config, values, new_channels, *, step=0, versions=None):
    """A checkpoint after ``config`` whose channels in ``new_channels`` get new versions."""
    checkpoint = empty_checkpoint()
    versions = dict(versions or {})
    for channel in new_channels:
        versions[channel] = saver.get_next_version(versions.get(channel), None)
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = versions
    new = {channel: versions[channel] for channel in new_channels}
    return saver.put(config, checkpoint, {"source": "loop", "step": step}, new), versions


def root(thread="t1"):
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def test_a_channel_value_is_stored_once_per_version(replicas):
    saver = SyncstoreSaver(replicas())
    first, versions = put(saver, root(), {"big": ["x"] * 100, "n": 1}, ["big", "n"])
    second, versions = put(saver, first, {"big": ["x"] * 100, "n": 2}, ["n"], step=1, versions=versions)
    assert saver.store.count(BLOBS) == 3  # big once, n twice
    assert saver.get_tuple(second).checkpoint["channel_values"] == {"big": ["x"] * 100, "n": 2}
    assert saver.get_tuple(first).checkpoint["channel_values"] == {"big": ["x"] * 100, "n": 1}


def test_a_put_is_one_local_transaction_ready_to_sync(replicas):
    store = replicas()
    saver = SyncstoreSaver(store)
    put(saver, root(), {"a": 1, "b": 2}, ["a", "b"])
    logged = store.changes()
    assert {c.table for c in logged} == {"langgraph_checkpoints", BLOBS}
    assert len(logged) == 3 and len({c.tx for c in logged}) == 1


def test_row_ids_come_from_langgraphs_keys_and_a_thread_is_a_range_of_them(replicas):
    a, b = SyncstoreSaver(replicas()), SyncstoreSaver(replicas())
    checkpoint = empty_checkpoint()
    for saver in (a, b):  # the same checkpoint written on two replicas is one row
        saver.put(root(), checkpoint, {"source": "input", "step": -1}, {})
    (row_a,) = a.store.rows("langgraph_checkpoints")
    (row_b,) = b.store.rows("langgraph_checkpoints")
    assert row_a["id"] == row_b["id"] == keys.checkpoint_id("t1", "", checkpoint["id"])
    low, high = keys.thread_range("t1")
    assert low <= row_a["id"] < high
    assert not low <= keys.checkpoint_id("t2", "", checkpoint["id"]) < high


def test_bad_input_is_refused_whole(replicas):
    saver = SyncstoreSaver(replicas())
    with pytest.raises(ValidationError):
        put(saver, root("bad\x00thread"), {"a": 1}, ["a"])
    assert saver.store.last_seq() == 0
    config, _ = put(saver, root(), {"a": 1}, ["a"])
    with pytest.raises(ValidationError, match="strategy"):
        saver.prune(["t1"], strategy="everything")
    assert saver.get_tuple(config) is not None


def test_prune_keeps_the_values_the_latest_checkpoint_names_and_removes_the_rest(replicas):
    saver = SyncstoreSaver(replicas())
    first, versions = put(saver, root(), {"kept": "same", "n": 1}, ["kept", "n"])
    second, versions = put(saver, first, {"kept": "same", "n": 2}, ["n"], step=1, versions=versions)
    saver.put_writes(first, [("n", 5)], "task")
    saver.prune(["t1"])
    assert [t.config for t in saver.list(root())] == [saver.get_tuple(second).config]
    assert saver.get_tuple(second).checkpoint["channel_values"] == {"kept": "same", "n": 2}
    assert saver.store.count(BLOBS) == 2  # n's first version went with the first checkpoint
    assert saver.store.count("langgraph_checkpoint_writes") == 0
    assert saver.store.tombstone("langgraph_checkpoints", keys.checkpoint_id("t1", "", first["configurable"]["checkpoint_id"]))


def test_built_from_an_async_store_and_awaited(tmp_path):
    async def main():
        async with syncstore.aio.open(str(tmp_path / "a.db")) as store:
            saver = SyncstoreSaver(store)
            checkpoint = empty_checkpoint()
            config = await saver.aput(root(), checkpoint, {"source": "input", "step": -1}, {})
            await saver.aput_writes(config, [("x", 1)], "task")
            found = await saver.aget_tuple(root())
            assert found.checkpoint["id"] == checkpoint["id"] and found.pending_writes == [("task", "x", 1)]

    asyncio.run(main())


@pytest.mark.postgres
def test_two_replicas_forking_one_thread_offline_never_conflict_and_agree_on_the_latest(
    replicas, sync_server, tenant
):
    import psycopg

    url, token = sync_server.url, sync_server.token(tenant)
    a, b = SyncstoreSaver(replicas("a")), SyncstoreSaver(replicas("b"))
    base, versions = put(a, root(), {"n": 0}, ["n"])
    a.store.sync(url, token=token)
    b.store.sync(url, token=token)
    # Offline, both continue the same checkpoint, each its own way.
    put(a, base, {"n": 1}, ["n"], step=1, versions=versions)
    put(b, base, {"n": 100}, ["n"], step=1, versions=versions)
    for _ in range(2):
        for saver in (a, b):
            saver.store.sync(url, token=token)
    assert len(list(a.list(root()))) == len(list(b.list(root()))) == 3
    assert a.get_tuple(root()).config == b.get_tuple(root()).config
    assert a.get_tuple(root()).checkpoint == b.get_tuple(root()).checkpoint
    with psycopg.connect(sync_server.database_url) as conn:
        conflicts = conn.execute("select count(*) from syncstore.conflicts where tenant = %s", (tenant,)).fetchone()[0]
    assert conflicts == 0
