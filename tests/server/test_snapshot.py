"""Snapshots over real websockets: current rows in keyset chunks, then the log from
the snapshot's position, nothing missed or doubled; resumable after a cut."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect

from syncstore.core import merge
from syncstore.core import protocol as p
from syncstore.core.merge import DELETED, Cell

from .conftest import ServerThread
from .helpers import hello, new_id, recv, recv_until, site, stamp, tenant_log, tenant_rows, token, whole_insert


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def small_chunks(shared_database):
    server = ServerThread(shared_database, snapshot_rows=5).start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def client(server, tenant, who):
    async with connect(server.ws_url, max_size=None) as ws:
        welcome = await hello(ws, token(tenant), who)
        assert isinstance(welcome, p.Welcome), welcome
        yield ws


async def push(ws, txs: list[p.LocalTx]) -> p.Ack:
    await ws.send(p.encode(p.Push(txs=txs)))
    ack, _ = await recv_until(ws, p.Ack)
    return ack


class Model:
    """A replica's cells, merged with the same rule as every replica."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Cell]] = {}
        self.seen_entries: list[int] = []

    def apply(self, changes: list[p.RowChange]) -> None:
        for change in changes:
            current = self.rows.setdefault(change.id, {})
            merged, _ = merge.merge_row(current, {k: Cell(*v) for k, v in change.cells.items()})
            self.rows[change.id] = merged

    def titles(self) -> dict[str, str]:
        return {
            row_id: cells["title"].value
            for row_id, cells in self.rows.items()
            if cells.get(DELETED, Cell(0, 0, b"")).value == 0 and "title" in cells
        }


async def seed(ws, n: int, h: int, tx: int = 1) -> list[str]:
    ids = sorted(new_id() for _ in range(n))
    await push(ws, [p.LocalTx(tx, [whole_insert(i + 1, row, h + i, title=f"v0-{i}") for i, row in enumerate(ids)])])
    return ids


def test_a_snapshot_in_chunks_then_the_log_from_its_position(small_chunks, shared_database):
    tenant = f"snap-{uuid.uuid4().hex[:8]}"

    async def main():
        async with client(small_chunks, tenant, site(1)) as writer:
            h = stamp()
            ids = await seed(writer, 12, h)
            hot = ids[3]
            # One row updated a hundred times, one deleted.
            seq = 13
            for k in range(100):
                await push(writer, [p.LocalTx(100 + k, [p.LocalChange(seq, "tasks", hot, h + 100 + k, {"title": f"v{k + 1}"}, None)])])
                seq += 1
            await push(writer, [p.LocalTx(300, [p.LocalChange(seq, "tasks", ids[0], h + 300, {DELETED: 1}, None)])])
            seq += 1
            head = tenant_log(shared_database, tenant)[-1][0]
            async with client(small_chunks, tenant, site(2)) as fresh:
                await fresh.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")], snapshot=True, id="all")))
                chunks = []
                while True:
                    message = await recv(fresh)
                    assert isinstance(message, p.Snapshot), message
                    chunks.append(message)
                    if message.last:
                        break
                up = await recv(fresh)
                # Live from the snapshot's position.
                await push(writer, [p.LocalTx(400, [whole_insert(seq, new_id(), h + 400, title="live")])])
                live, _ = await recv_until(fresh, p.Changes)
            return ids, hot, head, chunks, up, live

    ids, hot, head, chunks, up, live = run(main())
    shipped = [r for c in chunks for r in c.rows]
    rows = [r for r in shipped if r.cells["_deleted"][0] == 0]
    assert [r.id for r in rows] == ids[1:]  # by id, each once, the deleted one left out of the rows
    # ...and shipped deleted, with every cell its tombstone keeps: for a replica
    # that holds the row already, and for one that later sees it inserted again
    # (that log entry carries only the cells that change).
    (stone,) = [r for r in shipped if r.cells["_deleted"][0] == 1]
    assert stone.id == ids[0] and set(stone.cells) == set(rows[0].cells)
    assert stone.cells["_deleted"][1] > max(c[1] for name, c in stone.cells.items() if name != "_deleted")
    assert len(chunks) == 3 and all(sum(r.cells["_deleted"][0] == 0 for r in c.rows) <= 5 for c in chunks)
    assert all(c.position == head for c in chunks)
    assert [c.resume != "" for c in chunks] == [True, True, False]
    hot_row = next(r for r in rows if r.id == hot)
    assert hot_row.cells["title"][0] == "v100"  # the hundredth update, shipped once
    assert up == p.UpToDate(cursor=head)
    assert [tx.seq for tx in live.txs] == [head + 1]


def test_writes_during_a_snapshot_are_neither_missed_nor_doubled(small_chunks, shared_database):
    tenant = f"snap-{uuid.uuid4().hex[:8]}"

    async def main():
        async with client(small_chunks, tenant, site(1)) as writer, client(small_chunks, tenant, site(2)) as fresh:
            h = stamp()
            ids = await seed(writer, 30, h)
            model = Model()
            await fresh.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")], snapshot=True, id="all")))
            seq, tx = 31, 2
            position = None
            delivered: list[int] = []
            done = False
            last_log = 0
            while True:
                message = await recv(fresh)
                if isinstance(message, p.Snapshot):
                    position = message.position
                    model.apply(message.rows)
                    done = message.last
                elif isinstance(message, p.Changes):
                    for stx in message.txs:
                        delivered.append(stx.seq)
                        model.apply(stx.changes)
                elif isinstance(message, p.UpToDate) and done and tx > 8 and message.cursor >= last_log:
                    break
                if tx <= 8:
                    # Between chunks: edit rows already sent and rows still to come, insert, delete.
                    edits = [
                        p.LocalChange(seq, "tasks", ids[(tx * 7) % 30], h + 1000 + tx, {"title": f"edit{tx}"}, None),
                        whole_insert(seq + 1, new_id(), h + 1000 + tx, title=f"new{tx}"),
                        p.LocalChange(seq + 2, "tasks", ids[tx], h + 1000 + tx, {DELETED: 1}, None),
                    ]
                    last_log = (await push(writer, [p.LocalTx(tx, edits)])).log_seq
                    seq, tx = seq + 3, tx + 1
            return model, position, delivered

    model, position, delivered = run(main())
    server = {row["id"]: row["title"] for row in tenant_rows(shared_database, tenant) if not row["_deleted"]}
    assert model.titles() == server
    log = [seq for seq, _, _ in tenant_log(shared_database, tenant)]
    assert delivered == [seq for seq in log if seq > position]  # each entry after the position, once, in order


def test_a_cut_snapshot_resumes_from_its_last_chunk_at_newer_data(small_chunks, shared_database):
    tenant = f"snap-{uuid.uuid4().hex[:8]}"

    async def main():
        async with client(small_chunks, tenant, site(1)) as writer:
            h = stamp()
            ids = await seed(writer, 20, h)
            model = Model()
            async with client(small_chunks, tenant, site(2)) as first:
                await first.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")], snapshot=True, id="all")))
                a, b = await recv(first), await recv(first)
            model.apply(a.rows + b.rows)  # applied and persisted with b.resume and b.position; then cut
            # Meanwhile: an edit of a row already received, one of a row not yet sent, a new row.
            await push(writer, [p.LocalTx(2, [
                p.LocalChange(21, "tasks", ids[0], h + 500, {"title": "edited early"}, None),
                p.LocalChange(22, "tasks", ids[-1], h + 501, {"title": "edited late"}, None),
                whole_insert(23, new_id(), h + 502, title="newcomer"),
            ])])  # fmt: skip
            async with client(small_chunks, tenant, site(2)) as again:
                await again.send(p.encode(p.Subscribe(
                    shapes=[p.Shape("tasks")], snapshot=True, resume=b.resume, cursor=b.position, id="all",
                )))  # fmt: skip
                rest = []
                while True:
                    message = await recv(again)
                    if isinstance(message, p.Snapshot):
                        rest.append(message)
                        model.apply(message.rows)
                    elif isinstance(message, p.Changes):
                        for stx in message.txs:
                            model.apply(stx.changes)
                    elif isinstance(message, p.UpToDate):
                        break
            return ids, a, b, rest, model

    ids, a, b, rest, model = run(main())
    resent = [r.id for c in rest for r in c.rows]
    assert not set(resent) & {r.id for r in a.rows + b.rows}  # continues after the last chunk applied
    assert all(c.position == b.position for c in rest)  # the original position, though read from newer data
    server = {row["id"]: row["title"] for row in tenant_rows(shared_database, tenant) if not row["_deleted"]}
    assert model.titles() == server
    assert server[ids[0]] == "edited early" and server[ids[-1]] == "edited late"


def test_a_bad_resume_key_is_refused(small_chunks):
    async def main():
        async with client(small_chunks, f"snap-{uuid.uuid4().hex[:8]}", site(1)) as ws:
            await ws.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")], snapshot=True, resume="9:zz")))
            return await recv(ws)

    assert run(main()).code == "bad_subscribe"


def test_fetched_rows_come_whole_with_tombstones_and_only_the_tenants_own(small_chunks, shared_database):
    tenant, other = (f"snap-{uuid.uuid4().hex[:8]}" for _ in range(2))

    async def main():
        async with client(small_chunks, other, site(3)) as theirs:
            (foreign,) = await seed(theirs, 1, stamp())
        async with client(small_chunks, tenant, site(1)) as ws:
            h = stamp()
            live, gone = await seed(ws, 2, h)
            await push(ws, [p.LocalTx(2, [p.LocalChange(3, "tasks", live, h + 10, {"title": "edited"}, None)])])
            await push(ws, [p.LocalTx(3, [p.LocalChange(4, "tasks", gone, h + 20, {DELETED: 1}, None)])])
            await ws.send(p.encode(p.Fetch(id="f", table="tasks", ids=[gone, live, new_id(), foreign])))
            rows = await recv(ws)
            await ws.send(p.encode(p.Fetch(id="g", table="nope", ids=[live])))
            refused = await recv(ws)
            await ws.send(p.encode(p.Fetch(id="h", table="tasks", ids=[live] * (p.MAX_FETCH_IDS + 1))))
            too_many = await recv(ws)
            return live, gone, rows, refused, too_many

    live, gone, rows, refused, too_many = run(main())
    assert isinstance(rows, p.Rows) and rows.id == "f"
    assert [r.id for r in rows.rows] == sorted([live, gone])  # absent and other tenants' ids left out
    by_id = {r.id: r for r in rows.rows}
    assert by_id[live].cells["title"][0] == "edited" and by_id[live].cells["title"][2] == site(1)
    assert by_id[live].cells["title"][1] > by_id[live].cells["status"][1]  # each cell with its own clock
    assert by_id[gone].cells[DELETED][0] == 1 and set(by_id[gone].cells) == set(by_id[live].cells)
    assert (refused.code, refused.fatal) == ("bad_fetch", False)
    assert (too_many.code, too_many.fatal) == ("bad_fetch", False)
