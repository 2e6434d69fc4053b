"""A real running server over real websockets: sync, live streams, bad input, tenants, HTTP.

Each bad input gets a clear error; afterwards nothing of it was written and
the server still serves a new client.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid
from contextlib import asynccontextmanager

import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from syncstore.core import protocol as p
from syncstore.core.hlc import pack, wall_ms
from syncstore.core.merge import DELETED

from syncstore_server import auth

from .helpers import hello, insert, new_id, recv, recv_until, site, stamp, tenant_log, tenant_rows, token, update


SECRET_OTHER = auth.Secret("a-different-secret-" + "z" * 32, source="tests")


def run(coro):
    return asyncio.run(coro)


@asynccontextmanager
async def client(server, tenant, who=site(1), **hello_kw):
    async with connect(server.ws_url, max_size=None) as ws:
        welcome = await hello(ws, token(tenant), who, **hello_kw)
        assert isinstance(welcome, p.Welcome), welcome
        yield ws


async def push(ws, *txs) -> p.Ack:
    await ws.send(p.encode(p.Push(txs=list(txs))))
    ack, _ = await recv_until(ws, p.Ack)
    return ack


def fresh_tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def assert_untouched(url, tenant):
    assert tenant_rows(url, tenant) == []
    assert tenant_log(url, tenant) == []


def assert_server_up(server):
    async def main():
        async with client(server, fresh_tenant()) as ws:
            await ws.send(p.encode(p.Ping(nonce=5)))
            assert await recv(ws) == p.Pong(nonce=5)

    run(main())
    with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=10) as response:
        assert response.status == 200


# --- syncing -----------------------------------------------------------------------


def test_push_ack_and_a_live_stream_to_another_client(shared_server, shared_database):
    tenant = fresh_tenant()

    async def main():
        async with client(shared_server, tenant, site(1)) as writer, client(shared_server, tenant, site(2)) as watcher:
            await watcher.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")], cursor=0)))
            assert await recv(watcher) == p.UpToDate(cursor=0)
            row, h = new_id(), stamp()
            ack = await push(writer, p.LocalTx(1, [insert(1, row, h, title="live")]))
            changes, _ = await recv_until(watcher, p.Changes)  # pushed on commit, no polling
            (tx,) = changes.txs
            assert ack == p.Ack(upto_seq=1, log_seq=tx.seq)  # where the push landed in the log
            (change,) = tx.changes
            assert (change.table, change.id, change.cells["title"]) == ("tasks", row, ("live", h, site(1)))
            assert await recv(watcher) == p.UpToDate(cursor=tx.seq)
            return tx.seq

    seq = run(main())

    async def reconnect():
        # The writer comes back: the server remembers what it merged of this site.
        async with connect(shared_server.ws_url) as ws:
            welcome = await hello(ws, token(tenant), site(1))
            assert welcome.acked_seq == 1
            await ws.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")], cursor=seq)))
            assert await recv(ws) == p.UpToDate(cursor=seq)  # nothing new since its cursor

    run(reconnect())


def test_a_new_subscriber_catches_up_from_its_cursor_in_order(shared_server):
    tenant = fresh_tenant()

    async def main():
        async with client(shared_server, tenant, site(1)) as writer:
            h = stamp()
            for i in range(1, 6):
                await push(writer, p.LocalTx(i, [insert(i, new_id(), h + i, title=f"t{i}")]))
        async with client(shared_server, tenant, site(3)) as reader:
            await reader.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks"), p.Shape("task_messages")])))
            up, before = await recv_until(reader, p.UpToDate)
            seqs = [tx.seq for message in before for tx in message.txs]
            assert seqs == sorted(seqs) and len(seqs) == 5 and up.cursor == seqs[-1]
            titles = [tx.changes[0].cells["title"][0] for m in before for tx in m.txs]
            assert titles == [f"t{i}" for i in range(1, 6)]

    run(main())


def test_read_scope_receives_but_cannot_push(shared_server, shared_database):
    tenant = fresh_tenant()

    async def main():
        async with connect(shared_server.ws_url) as ws:
            assert isinstance(await hello(ws, token(tenant, scopes=["read"]), site(1)), p.Welcome)
            await ws.send(p.encode(p.Push(txs=[p.LocalTx(1, [insert(1, new_id(), stamp())])])))
            error = await recv(ws)
            assert error.code == "forbidden" and not error.fatal

    run(main())
    assert_untouched(shared_database, tenant)


# --- bad input: a clear error, nothing written, the server still up ---------------------


async def raw_after_hello(server, tenant, frame):
    async with client(server, tenant) as ws:
        await ws.send(frame)
        return await recv(ws)


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\xc1\xff\x00garbage", "bad_frame"),
        ("a text frame", "bad_frame"),
        (b"\x81\xa4type\xa9teleport!", "unknown_message"),
        (p.encode(p.Ack(upto_seq=1)), "unexpected_message"),
    ],
    ids=["malformed-msgpack", "text-frame", "unknown-message-type", "server-only-message"],
)
def test_malformed_or_unknown_messages(shared_server, shared_database, frame, code):
    tenant = fresh_tenant()
    error = run(raw_after_hello(shared_server, tenant, frame))
    assert isinstance(error, p.Error) and error.code == code and error.message
    assert_untouched(shared_database, tenant)
    assert_server_up(shared_server)


def test_malformed_frame_before_hello_closes_the_connection(shared_server):
    async def main():
        async with connect(shared_server.ws_url) as ws:
            await ws.send(b"\xc1\x00\x01")
            error = await recv(ws)
            assert error.code == "bad_frame" and error.fatal
            with pytest.raises(ConnectionClosedError) as closed:
                await recv(ws)
            assert closed.value.rcvd.code == 1002

    run(main())
    assert_server_up(shared_server)


def ahead(ms: int) -> int:
    return pack(wall_ms() + ms, 0)


@pytest.mark.parametrize(
    "change, code",
    [
        (lambda r: p.LocalChange(1, "secret_table", r, stamp(), {"title": "x", DELETED: 0}), "unknown_table"),
        (lambda r: insert(1, r, stamp(), tenant="someone-else"), "unknown_column"),
        (lambda r: insert(1, r, stamp(), title=["not", "text"]), "bad_value"),
        (lambda r: insert(1, r, stamp(), is_archived="maybe"), "bad_value"),
    ],
    ids=["unknown-table", "unknown-column", "wrong-type", "wrong-boolean"],
)
def test_refused_changes_are_reported_recorded_and_acked_past(shared_server, shared_database, change, code):
    tenant = fresh_tenant()

    async def main():
        async with client(shared_server, tenant) as ws:
            ack = await push(ws, p.LocalTx(7, [change(new_id())]))
            return ack

    ack = run(main())
    assert ack.upto_seq == 1  # the client is never blocked by it
    (rejection,) = ack.rejected
    assert rejection.tx == 7 and rejection.code == code and rejection.message
    assert_untouched(shared_database, tenant)
    with psycopg.connect(shared_database) as conn:
        recorded = conn.execute("SELECT code FROM syncstore.rejections WHERE tenant = %s", (tenant,)).fetchall()
    assert recorded == [(code,)]
    assert_server_up(shared_server)


def test_a_change_stamped_past_the_drift_cap_waits_instead_of_being_rejected(shared_server, shared_database):
    """What precedes it is merged and acked; it and what follows are neither
    merged nor recorded as rejected; a clear non-fatal error says when to try
    again; pushes the client sent before it heard are dropped, and once it
    pushes from the deferred transaction again (here re-stamped), all merge."""
    tenant = fresh_tenant()
    first, drifted, after = new_id(), new_id(), new_id()

    async def main():
        async with client(shared_server, tenant) as ws:
            await ws.send(p.encode(p.Push(txs=[
                p.LocalTx(1, [insert(1, first, stamp())]),
                p.LocalTx(2, [insert(2, drifted, ahead(10 * 60_000))]),
                p.LocalTx(3, [insert(3, after, stamp())]),
            ])))  # fmt: skip
            ack, _ = await recv_until(ws, p.Ack)
            error = await recv(ws)
            # A push the client sent before hearing: dropped, never acked.
            await ws.send(p.encode(p.Push(txs=[p.LocalTx(4, [insert(4, new_id(), stamp())])])))
            # From the deferred transaction again, re-stamped.
            again = await push(ws, p.LocalTx(2, [insert(2, drifted, stamp())]), p.LocalTx(3, [insert(3, after, stamp())]))
            return ack, error, again

    ack, error, again = run(main())
    assert ack.upto_seq == 1 and ack.rejected == []
    assert isinstance(error, p.Error) and error.code == "clock_drift" and not error.fatal
    assert 9 * 60_000 - 1000 <= error.retry_after_ms <= 9 * 60_000 and "ahead of the server's clock" in error.message
    assert again.upto_seq == 3 and again.rejected == []
    assert {row["id"] for row in tenant_rows(shared_database, tenant)} == {first, drifted, after}
    with psycopg.connect(shared_database) as conn:
        recorded = conn.execute("SELECT code FROM syncstore.rejections WHERE tenant = %s", (tenant,)).fetchall()
    assert recorded == []


def test_a_frame_over_the_maximum_is_refused_by_closing(shared_server, shared_database):
    tenant = fresh_tenant()

    async def main():
        async with client(shared_server, tenant) as ws:
            huge = insert(1, new_id(), stamp(), description="x" * (shared_server.server.max_frame + 1))
            await ws.send(p.encode(p.Push(txs=[p.LocalTx(1, [huge])])))
            with pytest.raises(ConnectionClosedError) as closed:
                await recv(ws)
            return closed.value.rcvd

    received = run(main())
    assert received.code == 1009 and "exceeds" in received.reason  # message too big
    assert_untouched(shared_database, tenant)
    assert_server_up(shared_server)


def test_a_push_too_large_for_one_batch_gets_an_error(shared_server, shared_database):
    tenant = fresh_tenant()
    h = stamp()
    txs = [p.LocalTx(i, [insert(i, new_id(), h + i)]) for i in range(1, 102)]  # the limit is 100

    async def main():
        async with client(shared_server, tenant) as ws:
            await ws.send(p.encode(p.Push(txs=txs)))
            return await recv(ws)

    error = run(main())
    assert error.code == "batch_too_large" and "100" in error.message
    assert_untouched(shared_database, tenant)


@pytest.mark.parametrize(
    "make_token, code",
    [
        (lambda t: auth.mint_token(SECRET_OTHER, tenant=t), "bad_token"),
        (lambda t: token(t, ttl_s=60, now=time.time() - 3600), "token_expired"),
        (lambda t: "not.a.token", "bad_token"),
    ],
    ids=["forged-signature", "expired", "garbage"],
)
def test_bad_tokens_are_refused_and_the_connection_closed(shared_server, shared_database, make_token, code):
    tenant = fresh_tenant()

    async def main():
        async with connect(shared_server.ws_url) as ws:
            error = await hello(ws, make_token(tenant), site(1))
            with pytest.raises(ConnectionClosedError) as closed:
                await recv(ws)
            return error, closed.value.rcvd.code

    error, close_code = run(main())
    assert isinstance(error, p.Error) and error.code == code and error.fatal
    assert close_code == 1008
    assert_untouched(shared_database, tenant)
    assert_server_up(shared_server)


# --- tenants ---------------------------------------------------------------------------


def test_a_client_forging_another_tenants_row_touches_only_its_own(shared_server, shared_database):
    alpha, beta = fresh_tenant(), fresh_tenant()
    row, h = new_id(), stamp()

    async def main():
        async with client(shared_server, alpha, site(1)) as a:
            await push(a, p.LocalTx(1, [insert(1, row, h, title="alpha's")]))
        async with client(shared_server, beta, site(2)) as b:
            await b.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")])))
            assert await recv(b) == p.UpToDate(cursor=0)  # alpha's row is not beta's to see
            # Beta writes to alpha's row id, newer, as an update and claims alpha's tenant in a column.
            forged = await push(
                b,
                p.LocalTx(1, [update(1, row, h + 100, {"title": (h, site(1))}, title="beta was here")]),
                p.LocalTx(2, [insert(2, new_id(), h + 101, tenant=alpha)]),
            )
            # Beta's own insert of the same id makes a row of beta's, apart from alpha's.
            await b.send(p.encode(p.Push(txs=[p.LocalTx(3, [insert(3, row, h + 102, title="beta's own")])])))
            _, before = await recv_until(b, p.Ack)
            # The live delivery may overtake the Ack (it is routed on the commit's notification).
            changes = next((m for m in before if isinstance(m, p.Changes)), None)
            if changes is None:
                changes, _ = await recv_until(b, p.Changes)
            return forged, changes

    forged, changes = run(main())
    assert [r.code for r in forged.rejected] == ["unknown_column"]
    assert [r["title"] for r in tenant_rows(shared_database, alpha)] == ["alpha's"]
    # An update of a row beta does not hold creates nothing (only inserts create rows).
    (beta_row,) = tenant_rows(shared_database, beta)
    assert beta_row["id"] == row and beta_row["title"] == "beta's own"
    assert all(tx.changes[0].id == row for tx in changes.txs)
    with psycopg.connect(shared_database) as conn:
        tenants = conn.execute("SELECT DISTINCT tenant FROM syncstore.change_log WHERE tenant IN (%s, %s)", (alpha, beta))
        assert sorted(t for (t,) in tenants) == sorted([alpha, beta])


def test_resolved_marks_only_the_senders_tenants_records(shared_server, shared_database):
    tenant, other = fresh_tenant(), fresh_tenant()
    row, h = new_id(), stamp()

    async def make_conflict(t):
        async with client(shared_server, t, site(1)) as a:
            await push(a, p.LocalTx(1, [insert(1, row, h, title="first")]))
            await push(a, p.LocalTx(2, [update(2, row, h + 9, {"title": (h, site(1))}, title="a's")]))
        async with client(shared_server, t, site(2)) as b:
            await push(b, p.LocalTx(1, [update(1, row, h + 1, {"title": (h, site(1))}, title="b's")]))
            await b.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")])))
            _, before = await recv_until(b, p.UpToDate)
            return [c.id for m in before for tx in m.txs for c in tx.conflicts]

    (mine,) = run(make_conflict(tenant))
    (theirs,) = run(make_conflict(other))

    async def resolve():
        async with client(shared_server, tenant, site(2)) as b:
            await b.send(p.encode(p.Resolved(conflict_ids=[mine, theirs])))
            await b.send(p.encode(p.Ping(nonce=1)))
            assert await recv(b) == p.Pong(nonce=1)  # the Resolved was handled before it

    run(resolve())
    with psycopg.connect(shared_database) as conn:
        state = dict(conn.execute(
            "SELECT id::text, resolved_at IS NOT NULL FROM syncstore.conflicts WHERE id::text IN (%s, %s)", (mine, theirs)
        ).fetchall())  # fmt: skip
    assert state == {mine: True, theirs: False}


# --- HTTP --------------------------------------------------------------------------------


def get(server, path):
    try:
        with urllib.request.urlopen(f"{server.http_url}{path}", timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read().decode()


def test_health_readiness_and_metrics(shared_server):
    assert get(shared_server, "/healthz")[0] == 200
    assert get(shared_server, "/readyz")[:1] == (200,)
    tenant = fresh_tenant()

    async def main():
        async with client(shared_server, tenant) as ws:
            await push(ws, p.LocalTx(1, [insert(1, new_id(), stamp())]))
            return get(shared_server, "/metrics")

    status, content_type, text = run(main())
    assert status == 200 and content_type.startswith("text/plain")
    for name in (
        "syncstore_connected_clients",
        "syncstore_changes_merged_total",
        "syncstore_merge_seconds_bucket",
        "syncstore_conflicts_total",
        "syncstore_log_position",
        "syncstore_log_entries",
    ):
        assert name in text, name
    connected = [line for line in text.splitlines() if line.startswith("syncstore_connected_clients ")]
    assert float(connected[0].split()[1]) >= 1
    merged = [line for line in text.splitlines() if line.startswith("syncstore_changes_merged_total ")]
    assert float(merged[0].split()[1]) >= 1
    assert get(shared_server, "/nowhere")[0] == 404


# --- limits on connections ------------------------------------------------------------


def test_connections_over_the_limit_are_refused_before_the_handshake(shared_database):
    from websockets.exceptions import InvalidStatus

    from .conftest import ServerThread

    server = ServerThread(shared_database, max_connections=1).start()
    try:

        async def main():
            async with client(server, fresh_tenant()):
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(server.ws_url):
                        pass
                return refused.value.response.status_code

        assert run(main()) == 503
        while server.server.connections:  # the first one is closing: then there is room again
            time.sleep(0.01)
        assert_server_up(server)
    finally:
        server.stop()


def test_a_client_that_never_says_hello_is_disconnected(shared_database):
    from .conftest import ServerThread

    server = ServerThread(shared_database, hello_timeout_s=0.2).start()
    try:

        async def main():
            async with connect(server.ws_url) as ws:
                error = await recv(ws)
                with pytest.raises(ConnectionClosed) as closed:
                    await recv(ws)
                return error, closed.value.rcvd.code

        error, code = run(main())
        assert error.code == "hello_timeout" and error.fatal and code == 1001
    finally:
        server.stop()


def test_changes_are_split_to_stay_within_the_frame_limit(shared_server):
    tenant = fresh_tenant()
    limit = shared_server.server.max_frame  # 64 KiB here

    async def main():
        async with client(shared_server, tenant, site(1)) as writer:
            h = stamp()
            for i in range(1, 9):  # 8 transactions of ~20 KB: 160 KB in all
                await push(writer, p.LocalTx(i, [insert(i, new_id(), h + i, description=str(i) * 20_000)]))
        async with connect(shared_server.ws_url, max_size=None) as reader:
            await hello(reader, token(tenant), site(2))
            await reader.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")])))
            frames = []
            while True:
                frame = await asyncio.wait_for(reader.recv(), 10)
                message = p.decode(frame)
                if isinstance(message, p.UpToDate):
                    return frames
                frames.append((len(frame), message))

    frames = run(main())
    assert len(frames) > 1 and all(size <= limit for size, _ in frames)
    seqs = [tx.seq for _, message in frames for tx in message.txs]
    assert len(seqs) == 8 and seqs == sorted(seqs)


def test_streams_survive_the_loss_of_the_notification_connection(shared_server, shared_database):
    tenant = fresh_tenant()

    async def main():
        async with client(shared_server, tenant, site(1)) as writer, client(shared_server, tenant, site(2)) as watcher:
            await watcher.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")])))
            assert await recv(watcher) == p.UpToDate(cursor=0)
            with psycopg.connect(shared_database, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'syncstore-server-listen' AND datname = current_database()"
                ).fetchall()
            assert killed == [(True,)]
            await push(writer, p.LocalTx(1, [insert(1, new_id(), stamp(), title="after the loss")]))
            # Whether the commit's notification was lost or not, the stream delivers it:
            # the listener reconnects and wakes every stream.
            changes, _ = await recv_until(watcher, p.Changes, timeout=30)
            return changes.txs[0].changes[0].cells["title"][0]

    assert run(main()) == "after the loss"
