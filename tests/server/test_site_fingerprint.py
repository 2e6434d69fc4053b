"""The server keeps the fingerprint of each site's change at its acked
sequence, says it in Welcome, and refuses a push that repeats a sequence
number with another change (a second copy of a replica file, same site id):
nothing of it is merged, and the client is told ``site_reused``."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
from websockets.asyncio.client import connect

from syncstore.core import protocol as p
from syncstore.core.fingerprint import change_fingerprint

from .helpers import hello, new_id, recv, recv_until, site, stamp, tenant_rows, token, whole_insert


def run(coro):
    return asyncio.run(coro)


def test_welcome_says_the_fingerprint_and_a_push_from_another_history_is_refused(shared_server, shared_database):
    tenant = f"fp-{uuid.uuid4().hex[:8]}"
    who = site(9)
    h = stamp()
    original = [whole_insert(k, new_id(), h + k) for k in (1, 2)]
    copy = [whole_insert(k, new_id(), h + 10 + k) for k in (1, 2, 3)]  # the same numbers, other changes

    async def main():
        async with connect(shared_server.ws_url) as first, connect(shared_server.ws_url) as second:
            assert (await hello(first, token(tenant), who)).acked_fingerprint == b""
            assert isinstance(await hello(second, token(tenant), who), p.Welcome)
            # Both welcomed at 0; the first pushes 1 and 2.
            await first.send(p.encode(p.Push(txs=[p.LocalTx(k, [c]) for k, c in enumerate(original, 1)])))
            ack, _ = await recv_until(first, p.Ack)
            assert ack.upto_seq == 2
            # The second pushes its own 1..3: 1 and 2 would be skipped as merged.
            await second.send(p.encode(p.Push(txs=[p.LocalTx(k, [c]) for k, c in enumerate(copy, 1)])))
            error = await recv(second)
        async with connect(shared_server.ws_url) as third:
            welcome = await hello(third, token(tenant), who)
        return error, welcome

    error, welcome = run(main())
    assert isinstance(error, p.Error) and error.code == "site_reused" and error.fatal
    assert "copy" in error.message
    assert welcome.acked_seq == 2
    last = original[-1]
    assert welcome.acked_fingerprint == change_fingerprint(last.hlc, last.table, last.id)
    rows = {r["id"] for r in tenant_rows(shared_database, tenant)}
    assert rows == {c.id for c in original}  # nothing of the second history merged


def test_a_push_repeating_the_acked_change_itself_is_a_retry_and_merges_what_follows(shared_server, shared_database):
    """A client whose Ack was lost pushes the same changes again: same history."""
    tenant = f"fp-{uuid.uuid4().hex[:8]}"
    who = site(10)
    h = stamp()
    changes = [whole_insert(k, new_id(), h + k) for k in (1, 2, 3)]

    async def main():
        async with connect(shared_server.ws_url) as ws:
            await hello(ws, token(tenant), who)
            await ws.send(p.encode(p.Push(txs=[p.LocalTx(1, changes[:2])])))
            assert (await recv_until(ws, p.Ack))[0].upto_seq == 2
            await ws.send(p.encode(p.Push(txs=[p.LocalTx(1, changes[:2]), p.LocalTx(2, changes[2:])])))
            return (await recv_until(ws, p.Ack))[0]

    ack = run(main())
    assert ack.upto_seq == 3 and not ack.rejected
    assert {r["id"] for r in tenant_rows(shared_database, tenant)} == {c.id for c in changes}


def test_a_site_merged_before_fingerprints_were_kept_is_not_refused(shared_server, shared_database):
    tenant = f"fp-{uuid.uuid4().hex[:8]}"
    who = site(11)
    h = stamp()

    async def main(changes):
        async with connect(shared_server.ws_url) as ws:
            await hello(ws, token(tenant), who)
            await ws.send(p.encode(p.Push(txs=[p.LocalTx(1, changes)])))
            return (await recv_until(ws, p.Ack))[0]

    run(main([whole_insert(1, new_id(), h + 1)]))
    with psycopg.connect(shared_database) as conn:
        conn.execute("UPDATE syncstore.site_acks SET acked_fingerprint = NULL WHERE tenant = %s", (tenant,))
    ack = run(main([whole_insert(1, new_id(), h + 2), whole_insert(2, new_id(), h + 3)]))
    assert ack.upto_seq == 2  # nothing to compare with: taken as before
