"""Shapes: filtered subscriptions over real websockets, and the router's cost.

A client subscribes to a table plus equality/IN filters on indexed columns,
always within its tenant; several shapes share one connection; a row moving
into a shape arrives whole; Unsubscribe stops a shape. Routing a change looks
only at the shapes it can concern, whatever their number.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager

from websockets.asyncio.client import connect

from syncstore import schema
from syncstore.core import protocol as p
from syncstore.core import shapes as sh
from syncstore.core.merge import DELETED

from syncstore_server.router import Router

from .helpers import hello, new_id, recv, recv_until, site, stamp, token, whole_insert


def run(coro):
    return asyncio.run(coro)


def fresh_tenant() -> str:
    return f"shape-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def client(server, tenant, who):
    async with connect(server.ws_url, max_size=None) as ws:
        welcome = await hello(ws, token(tenant), who)
        assert isinstance(welcome, p.Welcome), welcome
        yield ws


async def push(ws, *changes: p.LocalChange, tx: int = 1) -> p.Ack:
    await ws.send(p.encode(p.Push(txs=[p.LocalTx(tx, list(changes))])))
    ack, _ = await recv_until(ws, p.Ack)
    return ack


async def changes_until_quiet(ws, quiet: float = 0.4) -> list[p.ServerTx]:
    """Every ServerTx received until nothing arrives for ``quiet`` seconds."""
    out = []
    while True:
        try:
            message = await recv(ws, quiet)
        except (asyncio.TimeoutError, TimeoutError):
            return out
        if isinstance(message, p.Changes):
            out.extend(message.txs)


def repo_shape(*repos: str) -> p.Shape:
    return p.Shape("tasks", where={"repository": list(repos)})


def test_a_filtered_shape_gets_only_its_rows_live_and_a_row_moving_in_or_out_arrives_whole(shared_server):
    tenant, other = fresh_tenant(), fresh_tenant()
    a, b, moving = new_id(), new_id(), new_id()

    async def main():
        async with client(shared_server, tenant, site(1)) as writer, client(shared_server, tenant, site(2)) as watcher:
            await watcher.send(p.encode(p.Subscribe(shapes=[repo_shape("acme/web")], id="web")))
            assert isinstance(await recv(watcher), p.UpToDate)
            h = stamp()
            await push(
                writer,
                whole_insert(1, a, h, repository="acme/web", title="in"),
                whole_insert(2, b, h + 1, repository="acme/api", title="out"),
                whole_insert(3, moving, h + 2, repository="acme/api", title="moves", description="kept"),
            )
            first = await changes_until_quiet(watcher)
            # Another tenant's row with the same repository is never sent.
            async with client(shared_server, other, site(3)) as stranger:
                await push(stranger, whole_insert(1, new_id(), h + 3, repository="acme/web"))
            # A title change of a row outside the shape: nothing.
            await push(writer, p.LocalChange(4, "tasks", b, h + 4, {"title": "still out"}, {"title": (h + 1, site(1))}), tx=2)
            # The row moves in: the repository changes to a matching value.
            await push(
                writer, p.LocalChange(5, "tasks", moving, h + 5, {"repository": "acme/web"}, {"repository": (h + 2, site(1))}),
                tx=3,
            )
            moved = await changes_until_quiet(watcher)
            # It moves out again: that change is sent (whole), later ones are not.
            await push(
                writer, p.LocalChange(6, "tasks", moving, h + 6, {"repository": "acme/x"}, {"repository": (h + 5, site(1))}),
                tx=4,
            )
            await push(writer, p.LocalChange(7, "tasks", moving, h + 7, {"title": "gone"}, {"title": (h + 2, site(1))}), tx=5)
            after = await changes_until_quiet(watcher)
            return first, moved, after

    first, moved, after = run(main())
    assert [c.id for tx in first for c in tx.changes] == [a]
    (tx,) = moved
    (change,) = tx.changes
    assert change.id == moving
    # Whole: every column, with the cells it had before the move.
    assert set(change.cells) == {*schema.TABLES["tasks"].column_names[1:], DELETED}
    assert change.cells["description"][0] == "kept" and change.cells["repository"][0] == "acme/web"
    (tx,) = after
    (change,) = tx.changes
    assert change.id == moving and set(change.cells) == {*schema.TABLES["tasks"].column_names[1:], DELETED}
    assert change.cells["repository"][0] == "acme/x" and change.cells["title"][0] == "moves"  # not "gone"


def test_several_shapes_on_one_connection_in_lists_and_unsubscribe(shared_server):
    tenant = fresh_tenant()
    rows = {name: new_id() for name in ("web", "api", "cli", "msg", "agent")}

    async def main():
        async with client(shared_server, tenant, site(1)) as writer, client(shared_server, tenant, site(2)) as watcher:
            await watcher.send(p.encode(p.Subscribe(shapes=[repo_shape("acme/web", "acme/api")], id="repos")))
            await recv_until(watcher, p.UpToDate)
            await watcher.send(p.encode(p.Subscribe(
                shapes=[p.Shape("agent_memory", where={"agent_id": ["a1"], "memory_type": ["conversation", "knowledge_base"]})], id="memory",
            )))  # fmt: skip
            await recv_until(watcher, p.UpToDate)
            h = stamp()
            await push(
                writer,
                whole_insert(1, rows["web"], h, repository="acme/web"),
                whole_insert(2, rows["api"], h + 1, repository="acme/api"),
                whole_insert(3, rows["cli"], h + 2, repository="acme/cli"),
                whole_insert(4, rows["agent"], h + 3, "agent_memory", agent_id="a1", memory_type="conversation", content="x"),
                whole_insert(5, new_id(), h + 4, "agent_memory", agent_id="a1", memory_type="task_execution", content="y"),
                whole_insert(6, new_id(), h + 5, "agent_memory", agent_id="a2", memory_type="conversation", content="z"),
            )
            got = await changes_until_quiet(watcher)
            await watcher.send(p.encode(p.Unsubscribe(id="repos")))
            await watcher.send(p.encode(p.Ping(nonce=1)))
            await recv_until(watcher, p.Pong)
            await push(writer, whole_insert(7, new_id(), h + 6, repository="acme/web"),
                       whole_insert(8, new_id(), h + 7, "agent_memory", agent_id="a1", memory_type="knowledge_base", content="w"),
                       tx=2)  # fmt: skip
            later = await changes_until_quiet(watcher)
            return got, later

    got, later = run(main())
    assert sorted(c.id for tx in got for c in tx.changes) == sorted([rows["web"], rows["api"], rows["agent"]])
    assert [c.table for tx in later for c in tx.changes] == ["agent_memory"]


def test_shape_values_are_checked_against_the_schema(shared_server):
    tenant = fresh_tenant()

    async def main():
        async with client(shared_server, tenant, site(1)) as ws:
            codes = []
            for shape in (
                p.Shape("tasks", where={"title": ["x"]}),  # not indexed
                p.Shape("tasks", where={"status": [{"no": 1}]}),
                p.Shape("tasks", where={"status": []}),
            ):
                await ws.send(p.encode(p.Subscribe(shapes=[shape])))
                codes.append((await recv(ws)).code)
            await ws.send(p.encode(p.Subscribe(shapes=[p.Shape("environments", where={"is_active": [True]})])))
            ok = await recv(ws)
            return codes, ok

    codes, ok = run(main())
    assert codes == ["unsupported_shape", "bad_subscribe", "bad_subscribe"]
    assert isinstance(ok, p.UpToDate)


# --- the router --------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[int, p.ServerTx]] = []

    def deliver(self, entries):
        self.got.extend(entries)


def entry(seq: int, repo: str, *, before: str | None = None) -> sh.LogEntry:
    row = f"row-{seq}"
    tx = p.ServerTx(seq, [p.RowChange("tasks", row, {"title": ("t", 1, b"s" * 16)})])
    keys = [sh.RowKeys("tasks", row, {"repository": repo, "status": "pending"}, {} if before is None else {"repository": before})]
    return sh.LogEntry(seq, tx, keys)


def test_routing_looks_only_at_the_shapes_a_change_can_concern(monkeypatch):
    router = Router()
    sinks = {}
    for n in range(5_000):
        sinks[n] = Sink()
        router.register(sinks[n], "t", [sh.check_shape(repo_shape(f"repo-{n}"))])
    whole = Sink()
    router.register(whole, "t", [sh.check_shape(p.Shape("tasks"))])
    other_tenant = Sink()
    router.register(other_tenant, "u", [sh.check_shape(repo_shape("repo-7"))])

    checked = []
    original = sh.select

    def counting(e, selection):
        checked.append(selection)
        return original(e, selection)

    with monkeypatch.context() as patch:
        patch.setattr(sh, "select", counting)
        router.route("t", [entry(1, "repo-7")])
        assert len(checked) == 2  # the repo-7 shape and the whole table: not 5,002
        router.route("t", [entry(2, "repo-9", before="repo-8")])  # moved from repo-8 to repo-9
    assert [seq for seq, _ in sinks[7].got] == [1]
    assert [seq for seq, _ in whole.got] == [1, 2]
    assert other_tenant.got == []
    assert [seq for seq, _ in sinks[8].got] == [2]  # moved out: told of the move
    assert [seq for seq, _ in sinks[9].got] == [2]  # moved in
    assert all(not sinks[n].got for n in sinks if n not in (7, 8, 9))

    # The cost per routed change stays flat as shapes grow (no scan of every shape).
    def cost(router: Router) -> float:
        entries = [entry(seq, f"repo-{seq % 50}") for seq in range(3, 2_003)]
        started = time.perf_counter()
        router.route("t", entries)
        return time.perf_counter() - started

    small = Router()
    for n in range(50):
        small.register(Sink(), "t", [sh.check_shape(repo_shape(f"repo-{n}"))])
    for n in range(50, 20_000):
        router.register(Sink(), "t", [sh.check_shape(repo_shape(f"repo-{n}"))])
    best_small = min(cost(small) for _ in range(3))
    best_large = min(cost(router) for _ in range(3))
    assert best_large < best_small * 4 + 0.05, (best_small, best_large)
    router.unregister(whole)
    assert len(router) == 5_000 + 1 + 19_950  # the first 5,000, the other tenant's, 19,950 more
