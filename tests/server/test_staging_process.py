"""A staged transaction and a server killed with -9 in the middle of merging it:
nothing shows, the parts staged before stay, and the client's next connection
finishes the transaction exactly once."""

from __future__ import annotations

import asyncio

import msgspec
import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from syncstore.core import protocol as p

from .helpers import ServerProcess, hello, insert, new_id, recv, recv_until, site, stamp, token

pytestmark = pytest.mark.slow

TENANT = "staged-kill"
A = site(7)
ROWS, PART = 6_000, 500


def parts() -> list[p.LocalTx]:
    h = stamp()
    changes = [insert(i + 1, new_id(), h + i, title="t" * 200) for i in range(ROWS)]
    return [p.LocalTx(1, changes[i : i + PART], ROWS, ROWS) for i in range(0, ROWS, PART)]


async def merging(url: str) -> bool:
    """Whether a server connection is merging a staged transaction right now."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'syncstore-server' "
            "AND xact_start IS NOT NULL AND (query LIKE '%%ss_staged_changes%%' OR query LIKE '%%_ss_log_pieces%%' "
            "OR query LIKE '%%_ss_stage_%%' OR query LIKE 'SELECT id,%%FOR UPDATE')"
        )
        return (await cur.fetchone())[0] > 0


def test_kill_9_mid_merge_of_a_staged_transaction_then_it_finishes_once(migrated):
    pieces = parts()

    async def until_killed(server: ServerProcess) -> int:
        staged = 0
        async with connect(server.ws_url, max_size=None) as ws:
            welcome = await hello(ws, token(TENANT), A)
            assert welcome.max_staged >= ROWS and welcome.staged_seq == 0
            for piece in pieces[:-1]:
                await ws.send(p.encode(p.Push(txs=[piece])))
                staged = (await recv_until(ws, p.Ack))[0].staged_seq
            await ws.send(p.encode(p.Push(txs=[pieces[-1]])))
            while not await merging(migrated):
                pass
            server.kill()
        return staged

    with ServerProcess("--database-url", migrated) as server:
        try:
            staged = asyncio.run(until_killed(server))
        except ConnectionClosed:
            staged = ROWS - PART
    assert staged == ROWS - PART

    with psycopg.connect(migrated) as conn:
        shown = conn.execute("SELECT count(*) FROM syncstore.tasks WHERE tenant = %s", (TENANT,)).fetchone()[0]
    assert shown == 0, "the merge was interrupted: nothing of the transaction shows"

    async def resume(server: ServerProcess) -> p.Ack:
        async with connect(server.ws_url, max_size=None) as ws:
            welcome = await hello(ws, token(TENANT), A)
            assert welcome.acked_seq == 0 and welcome.staged_seq == ROWS - PART  # what was staged stayed
            await ws.send(p.encode(p.Push(txs=[pieces[-1]])))
            return (await recv_until(ws, p.Ack, timeout=120))[0]

    with ServerProcess("--database-url", migrated) as server:
        ack = asyncio.run(resume(server))
        server.terminate()
    assert ack.upto_seq == ROWS and ack.log_seq > 0

    with psycopg.connect(migrated) as conn:
        rows = conn.execute("SELECT count(DISTINCT id) FROM syncstore.tasks WHERE tenant = %s", (TENANT,)).fetchone()[0]
        payloads = conn.execute(
            "SELECT payload FROM syncstore.change_log WHERE tenant = %s ORDER BY seq", (TENANT,)
        ).fetchall()
        staged_left = conn.execute("SELECT count(*) FROM syncstore.staged_changes WHERE tenant = %s", (TENANT,)).fetchone()[0]
    entries = [msgspec.msgpack.decode(payload, type=p.ServerTx) for (payload,) in payloads]
    assert rows == ROWS and staged_left == 0
    assert sum(len(tx.changes) for tx in entries) == ROWS  # each row logged once, in one group
    assert {tx.group_end for tx in entries} == {entries[-1].seq}
