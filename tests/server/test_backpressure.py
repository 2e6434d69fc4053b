"""Back-pressure and limits: a slow client neither stalls others nor grows the
server's memory; it is dropped and catches up by cursor. Idle clients are
pinged, then dropped. (Frame size, batch size and connection count limits are
in test_wire.py.)"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from syncstore.core import protocol as p

from .conftest import ServerThread
from .helpers import hello, new_id, recv, recv_until, site, stamp, token, whole_insert


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def tight_server(shared_database):
    server = ServerThread(shared_database, max_queue=256 * 1024).start()
    try:
        yield server
    finally:
        server.stop()


def handlers(server: ServerThread):
    return list(server.server._handlers)


def test_a_slow_client_is_dropped_while_a_fast_one_keeps_up_and_it_catches_up_by_cursor(tight_server):
    tenant = f"bp-{uuid.uuid4().hex[:8]}"
    blob = "x" * 8_000
    pushes, rows_per_push = 40, 50

    async def main():
        async with connect(tight_server.ws_url, max_size=None) as writer, \
                connect(tight_server.ws_url, max_size=None) as fast, \
                connect(tight_server.ws_url, max_size=None, max_queue=1) as slow:  # fmt: skip
            for ws, who in ((writer, 1), (fast, 2), (slow, 3)):
                assert isinstance(await hello(ws, token(tenant), site(who)), p.Welcome)
            for ws in (fast, slow):
                await ws.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")])))
                assert isinstance(await recv(ws), p.UpToDate)
            # The slow client stops reading from here on.
            h, seq, received, peak, last_log = stamp(), 0, 0, 0, 0

            async def read_fast():
                nonlocal received
                while True:
                    message = await recv(fast, 30)
                    if isinstance(message, p.Changes):
                        received += sum(len(tx.changes) for tx in message.txs)
                    if isinstance(message, p.UpToDate) and message.cursor >= last_log > 0 and received == pushes * rows_per_push:
                        return

            reader = asyncio.create_task(read_fast())
            for k in range(pushes):
                rows = []
                for _ in range(rows_per_push):
                    seq += 1
                    rows.append(whole_insert(seq, new_id(), h + seq, description=blob))
                await writer.send(p.encode(p.Push(txs=[p.LocalTx(k + 1, rows)])))
                ack, _ = await recv_until(writer, p.Ack)
                last_log = ack.log_seq
                peak = max([peak, *(h._queued for h in handlers(tight_server))])
            started = time.monotonic()
            await asyncio.wait_for(reader, 30)
            fast_done = time.monotonic() - started
            # The slow client now reads what is left: then the reason, then the close.
            seen = []
            try:
                while True:
                    seen.append(await recv(slow, 10))
            except ConnectionClosed as exc:
                close = exc.rcvd
            return received, peak, fast_done, seen, close, last_log

    received, peak, fast_done, seen, close, last_log = run(main())
    assert received == pushes * rows_per_push  # the fast client got everything
    assert fast_done < 10
    assert peak <= 256 * 1024 + 4 * 1024 * 1024  # bounded: the limit plus at most one message
    errors = [m for m in seen if isinstance(m, p.Error)]
    assert errors and errors[-1].code == "too_slow" and errors[-1].fatal
    assert close is not None and close.code == 1013

    # It reconnects and catches up from its cursor (here: the start) at its own pace.
    async def catch_up():
        async with connect(tight_server.ws_url, max_size=None) as again:
            await hello(again, token(tenant), site(3))
            await again.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")], cursor=0)))
            got = 0
            while True:
                message = await recv(again, 30)
                if isinstance(message, p.Changes):
                    got += sum(len(tx.changes) for tx in message.txs)
                elif isinstance(message, p.UpToDate) and message.cursor >= last_log:
                    return got

    assert run(catch_up()) == pushes * rows_per_push


def test_an_idle_client_is_pinged_then_dropped(shared_database):
    server = ServerThread(shared_database, idle_timeout_s=1.0).start()

    async def main():
        async with connect(server.ws_url, max_size=None) as ws:
            await hello(ws, token(f"bp-{uuid.uuid4().hex[:8]}"), site(1))
            started = time.monotonic()
            ping = await recv(ws, 5)
            error = await recv(ws, 5)
            try:
                await recv(ws, 5)
            except ConnectionClosed as exc:
                return ping, error, exc.rcvd.code, time.monotonic() - started

    try:
        ping, error, code, took = run(main())
    finally:
        server.stop()
    assert isinstance(ping, p.Ping)
    assert error.code == "idle_timeout" and error.fatal and code == 1001
    assert 0.9 <= took < 5
