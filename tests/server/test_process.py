"""The server as a real process: kill -9 mid-merge loses and doubles nothing; SIGTERM drains."""

from __future__ import annotations

import asyncio
import re

import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from syncstore.core import protocol as p

from syncstore_server.store import open_store

from .helpers import SECRET, ServerProcess, hello, insert, new_id, recv, site, stamp, token, update

pytestmark = pytest.mark.slow

TENANT = "proc"
A, B = site(1), site(2)


def seed(url: str, count: int) -> tuple[list[str], int]:
    """Rows written by site A with late clocks, so site B's edits lose and conflict."""
    ids, h = [new_id() for _ in range(count)], stamp(1 << 24)

    async def main():
        async with open_store(url) as store:
            txs = [p.LocalTx(i + 1, [insert(i + 1, row, h, title="a's")]) for i, row in enumerate(ids)]
            await store.merge(TENANT, A, txs)

    asyncio.run(main())
    return ids, h


def workload(seeded: list[str], seeded_hlc: int, *, txs: int, per_tx: int) -> list[p.LocalTx]:
    """Site B's transactions: half new rows, half stale edits of A's rows (each a conflict)."""
    out, seq, h, edits = [], 0, stamp(), iter(seeded)
    for t in range(1, txs + 1):
        changes = []
        for k in range(per_tx):
            seq += 1
            if k % 2:
                changes.append(update(seq, next(edits), h + seq, {"title": (h, B)}, title=f"b's {seq}"))
            else:
                changes.append(insert(seq, new_id(), h + seq, title=f"new {seq}"))
        out.append(p.LocalTx(t, changes))
    return out


async def in_flight(url: str) -> bool:
    """Whether a server connection is inside a transaction right now."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'syncstore-server' "
            "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        )
        return (await cur.fetchone())[0] > 0


async def pipeline(ws, txs: list[p.LocalTx], per_push: int) -> None:
    for i in range(0, len(txs), per_push):
        await ws.send(p.encode(p.Push(txs=txs[i : i + per_push])))


def test_kill_9_mid_merge_loses_nothing_and_doubles_nothing(migrated):
    seeded, seeded_hlc = seed(migrated, 600)
    txs = workload(seeded, seeded_hlc, txs=60, per_tx=20)  # 1200 changes: 600 new rows, 600 conflicts
    last_seq = txs[-1].changes[-1].seq
    acked = 0

    async def until_killed(server: ServerProcess) -> int:
        got = 0
        async with connect(server.ws_url, max_size=None) as ws:
            welcome = await hello(ws, token(TENANT), B)
            assert welcome.acked_seq == 0
            await pipeline(ws, txs, per_push=2)
            ack = await recv(ws, timeout=60)
            got = ack.upto_seq
            # Kill while a merge transaction is open (the pushes keep it busy).
            while got < last_seq and not await in_flight(migrated):
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.001)
                    got = max(got, p.decode(message).upto_seq)
                except asyncio.TimeoutError:
                    pass
            server.kill()
        return got

    with ServerProcess("--database-url", migrated) as server:
        try:
            acked = asyncio.run(until_killed(server))
        except ConnectionClosed:
            pass
    assert acked < last_seq, "the server finished before it could be killed; make the workload larger"

    async def retry(server: ServerProcess) -> int:
        async with connect(server.ws_url, max_size=None) as ws:
            welcome = await hello(ws, token(TENANT), B, acked_seq=acked)
            assert welcome.acked_seq >= acked  # it may have committed more than we heard
            # Like the client: send again everything after what *we* know was acked,
            # with the same sequence numbers; the server skips what it already has.
            await pipeline(ws, [tx for tx in txs if tx.changes[-1].seq > acked], per_push=2)
            upto = 0
            while upto < last_seq:
                upto = (await recv(ws, timeout=60)).upto_seq
            return upto

    with ServerProcess("--database-url", migrated) as server:
        assert asyncio.run(retry(server)) == last_seq
        server.terminate()

    with psycopg.connect(migrated) as conn:
        rows = conn.execute("SELECT count(*) FROM syncstore.tasks WHERE tenant = %s", (TENANT,)).fetchone()[0]
        new_titles = conn.execute(
            "SELECT count(*) FROM syncstore.tasks WHERE tenant = %s AND title LIKE 'new %%'", (TENANT,)
        ).fetchone()[0]
        conflicts = conn.execute("SELECT count(*) FROM syncstore.conflicts WHERE tenant = %s", (TENANT,)).fetchone()[0]
        doubled = conn.execute(
            "SELECT origin_tx FROM syncstore.change_log WHERE tenant = %s AND origin_site = %s "
            "GROUP BY origin_tx HAVING count(*) > 1",
            (TENANT, B),
        ).fetchall()
        logged = conn.execute(
            "SELECT count(*) FROM syncstore.change_log WHERE tenant = %s AND origin_site = %s", (TENANT, B)
        ).fetchone()[0]
        server_acked = conn.execute(
            "SELECT acked_seq FROM syncstore.site_acks WHERE tenant = %s AND site = %s", (TENANT, B)
        ).fetchone()[0]
    assert new_titles == 600 and rows == 1200  # nothing lost
    assert conflicts == 600  # each losing edit recorded once: nothing merged twice
    assert doubled == [] and logged == len(txs)  # one log entry per transaction
    assert server_acked == last_seq


def test_sigterm_drains_the_merge_in_flight_then_closes(migrated):
    seeded, seeded_hlc = seed(migrated, 400)
    txs = workload(seeded, seeded_hlc, txs=40, per_tx=20)
    final = txs[-1].changes[-1].seq

    async def main(server: ServerProcess) -> tuple[int, int | None]:
        last_ack, close_code = 0, None
        async with connect(server.ws_url, max_size=None) as ws:
            await hello(ws, token(TENANT), B)
            await pipeline(ws, txs, per_push=2)
            last_ack = (await recv(ws, timeout=60)).upto_seq
            while last_ack < final and not await in_flight(migrated):
                try:
                    last_ack = p.decode(await asyncio.wait_for(ws.recv(), 0.001)).upto_seq
                except asyncio.TimeoutError:
                    pass
            assert last_ack < final, "every push was merged before SIGTERM; make the workload larger"
            server.proc.terminate()  # SIGTERM
            try:
                while True:
                    message = p.decode(await asyncio.wait_for(ws.recv(), 60))
                    if isinstance(message, p.Ack):
                        last_ack = message.upto_seq
            except ConnectionClosed as closed:
                close_code = closed.rcvd.code if closed.rcvd else None
        return last_ack, close_code

    with ServerProcess("--database-url", migrated) as server:
        last_ack, close_code = asyncio.run(main(server))
        assert server.proc.wait(60) == 0
        server.wait_for(re.compile(r"stopped"))
    assert close_code == 1001  # going away, said cleanly
    with psycopg.connect(migrated) as conn:
        server_acked = conn.execute(
            "SELECT acked_seq FROM syncstore.site_acks WHERE tenant = %s AND site = %s", (TENANT, B)
        ).fetchone()[0]
    # The merge that was running finished and its Ack reached the client before the close.
    assert server_acked == last_ack


def test_the_log_never_shows_the_secret_or_a_token(migrated):
    tok = token(TENANT)

    async def session(server: ServerProcess) -> None:
        async with connect(server.ws_url) as ws:
            await hello(ws, tok, B)
            await ws.send(p.encode(p.Push(txs=[p.LocalTx(1, [insert(1, new_id(), stamp())])])))
            await recv(ws)
        async with connect(server.ws_url) as ws:  # a refused token is not logged either
            await hello(ws, tok + "x", B)

    with ServerProcess("--database-url", migrated, "--log-level", "debug") as server:
        asyncio.run(session(server))
        assert server.terminate() == 0
        text = server.all_output()
    assert "DEBUG" in text and "stopped" in text  # the log is there, at debug level
    for secret in (SECRET.reveal().decode(), tok, tok.split(".")[2], tok.encode().hex()[:32]):
        assert secret not in text
