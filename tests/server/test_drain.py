"""A graceful stop drains a connection whose client keeps pushing (no cut at the drain timeout)."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from syncstore.core import protocol as p

from syncstore_server.app import SyncServer

from .helpers import SECRET, hello, insert, new_id, site, stamp, token

pytestmark = pytest.mark.slow

TENANT = "drain"
ROUNDS = 20


async def one_stop(url: str, who: bytes, first_seq: int) -> tuple[int | None, int]:
    """Start a server, push without pause, stop the server once pushes are being
    acked; the close code the client got and the next sequence to use."""
    # A cut connection would hold the stop for the drain timeout: short here, so
    # a round that goes wrong fails on its close code rather than waiting long.
    server = SyncServer(url, secret=SECRET, port=0, drain_timeout_s=5, apply_migrations=False)
    await server.start()
    seq = first_seq
    acked = asyncio.Event()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/", max_size=None) as ws:
            welcome = await hello(ws, token(TENANT), who)
            assert isinstance(welcome, p.Welcome), welcome

            async def push_forever() -> None:
                nonlocal seq
                try:
                    while True:
                        await ws.send(p.encode(p.Push(txs=[p.LocalTx(seq, [insert(seq, new_id(), stamp(seq))])])))
                        seq += 1
                        await asyncio.sleep(0)
                except ConnectionClosed:
                    return

            async def read_until_closed() -> int | None:
                try:
                    while True:
                        if isinstance(p.decode(await ws.recv()), p.Ack):
                            acked.set()
                except ConnectionClosed as closed:
                    return closed.rcvd.code if closed.rcvd else None

            pusher = asyncio.create_task(push_forever())
            reader = asyncio.create_task(read_until_closed())
            await asyncio.wait_for(acked.wait(), 30)
            await server.stop()  # what SIGTERM does
            code = await asyncio.wait_for(reader, 30)
            await asyncio.wait_for(pusher, 30)
    finally:
        await server.stop()
    return code, seq


def test_stops_while_a_client_pushes_always_drain_and_close_with_going_away(migrated):
    # A frame that arrives just as the drain stops the reader must not keep it
    # reading: each stop lands at a random point of the push stream, and over
    # these rounds some land on a frame being received.
    async def main() -> list[int | None]:
        codes, seq = [], 1
        for _ in range(ROUNDS):
            code, seq = await one_stop(migrated, site(7), seq)
            codes.append(code)
        return codes

    codes = asyncio.run(main())
    assert codes == [1001] * ROUNDS  # 1006 (no close frame): cut at the drain timeout
