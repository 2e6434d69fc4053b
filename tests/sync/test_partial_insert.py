"""One client cannot poison the tenant: a change that brings a row to life with
only some of its columns (pushed by a client that bypasses the replica) is
completed or refused at merge time, and a fresh replica always bootstraps from
what the server holds, even a row stored before the server completed them."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest
from websockets.asyncio.client import connect

from syncstore import schema
from syncstore.core import protocol as p
from syncstore.core.hlc import pack, wall_ms
from syncstore.core.merge import DELETED

from .conftest import psycopg, replica_rows, server_rows

pytestmark = pytest.mark.postgres

RAW_SITE = bytes(range(16))


async def _raw_push(url: str, token: str, txs: list[p.LocalTx]) -> p.Ack:
    """Push as a client that builds its own changes (no replica checks them)."""
    async with connect(url, max_size=None) as ws:
        await ws.send(p.encode(p.Hello(token=token, site=RAW_SITE)))
        welcome = p.decode(await asyncio.wait_for(ws.recv(), 10))
        assert isinstance(welcome, p.Welcome), welcome
        await ws.send(p.encode(p.Push(txs=txs)))
        while True:
            message = p.decode(await asyncio.wait_for(ws.recv(), 10))
            if isinstance(message, p.Ack):
                return message
            assert not isinstance(message, p.Error), message


def raw_push(url: str, token: str, *txs: p.LocalTx) -> p.Ack:
    return asyncio.run(_raw_push(url, token, list(txs)))


def test_a_partial_insert_is_completed_and_a_fresh_replica_bootstraps(sync_server, tenant, replicas):
    row_id = str(uuid.uuid4())
    hlc = pack(wall_ms(), 0)
    # An insert giving the required title and nothing else.
    change = p.LocalChange(1, "tasks", row_id, hlc, {"title": "partial", DELETED: 0}, None)
    token = sync_server.token(tenant)
    ack = raw_push(sync_server.url, token, p.LocalTx(1, [change]))
    assert ack.upto_seq == 1 and not ack.rejected
    rows = server_rows(sync_server.database_url, tenant)
    # Completed with the schema's defaults, every cell at the insert's clock.
    assert rows[row_id]["status"] == "pending" and rows[row_id]["metadata"] == "{}"
    fresh = replicas("fresh")
    result = fresh.sync(sync_server.url, token=token)  # before: every bootstrap failed on the zero clock
    assert result.snapshot_rows == 1
    assert replica_rows(fresh) == rows
    cells = fresh.cells("tasks", row_id)
    assert {cell.hlc for cell in cells.values()} == {hlc} and {cell.site for cell in cells.values()} == {RAW_SITE}
    # A replica that was live when it came got the whole row too.
    live = replicas("live")
    live.sync(sync_server.url, token=token)
    other = p.LocalChange(2, "tasks", str(uuid.uuid4()), hlc + 1, {"title": "second", DELETED: 0}, None)
    raw_push(sync_server.url, token, p.LocalTx(2, [other]))
    live.sync(sync_server.url, token=token)
    assert replica_rows(live) == server_rows(sync_server.database_url, tenant)
    assert {cell.hlc for cell in live.cells("tasks", other.id).values()} == {hlc + 1}


def test_bringing_a_row_to_life_without_its_required_columns_is_refused(sync_server, tenant, replicas):
    """A change marking a row the server does not hold as live, without a
    title (an update's ``seen``, so the insert checks did not ask for one),
    would make a row no replica can take: it is refused, and later
    transactions merge."""
    token = sync_server.token(tenant)
    hlc = pack(wall_ms(), 0)
    bad = p.LocalChange(1, "tasks", str(uuid.uuid4()), hlc, {"status": "paused", DELETED: 0}, {})
    good = p.LocalChange(2, "tasks", str(uuid.uuid4()), hlc + 1, {"title": "fine", DELETED: 0}, None)
    ack = raw_push(sync_server.url, token, p.LocalTx(1, [bad]), p.LocalTx(2, [good]))
    assert ack.upto_seq == 2
    assert [(r.tx, r.code) for r in ack.rejected] == [(1, "bad_value")]
    assert "title" in ack.rejected[0].message
    assert set(server_rows(sync_server.database_url, tenant)) == {good.id}
    fresh = replicas("fresh")
    fresh.sync(sync_server.url, token=token)
    assert set(replica_rows(fresh)) == {good.id}


def test_a_row_stored_with_unwritten_cells_does_not_stop_a_bootstrap(sync_server, tenant, replicas):
    """A server that merged partial inserts before it completed them holds
    rows whose other cells carry the zero clock ("nobody wrote this"): the
    snapshot leaves those cells out, and the replica fills them with the same
    defaults at the same zero clock."""
    writer = replicas("writer")
    token = sync_server.token(tenant)
    row_id = writer.tasks.create("whole").id
    writer.sync(sync_server.url, token=token)
    # Make it look as such a server left it: the title and _deleted written at
    # the insert's clock (the row's base clock), every other cell its default
    # at the zero clock (the writer's timestamps were the only other values).
    unwritten = [c.name for c in schema.table("tasks").columns[1:] if c.name != "title"]
    with psycopg.connect(sync_server.database_url) as conn:
        conn.execute("select set_config('syncstore.writer', 'server', false)")  # not a direct write
        conn.execute(
            "update syncstore.tasks set created_at = null, updated_at = null, _clocks = %s "
            "where tenant = %s and id = %s",
            (msgspec.msgpack.encode({name: (0, b"") for name in unwritten}), tenant, row_id),
        )
    hlc = writer.cells("tasks", row_id)["title"].hlc
    fresh = replicas("fresh")
    result = fresh.sync(sync_server.url, token=token)  # before: "clock stamp must be a positive 64-bit integer, got 0"
    assert result.snapshot_rows == 1
    assert replica_rows(fresh) == server_rows(sync_server.database_url, tenant)
    cells = fresh.cells("tasks", row_id)
    assert cells["title"].hlc == hlc and cells["status"].hlc == 0

