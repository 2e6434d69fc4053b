"""Client and server sessions joined in memory, with no I/O at all.

The two protocol ends from :mod:`syncstore.core` talk through in-memory
queues (the way h11's tests join a client and a server). Around them sit a
small reference server (rows, a log and acks in dicts, merged with
:mod:`syncstore.core.merge`) and model replicas (cells, a change log, a
clock). The network misbehaves on demand: messages are duplicated, the
transactions of a Changes message arrive shuffled, connections drop at any
point. Whatever happens, once everyone syncs cleanly every replica holds what
the server holds, no change is merged twice, and every conflict record
reaches every replica.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from syncstore.core import client_session as cs
from syncstore.core import merge
from syncstore.core import protocol as p
from syncstore.core import server_session as ss
from syncstore.core.hlc import HybridClock
from syncstore.core.merge import DELETED, Cell

TABLES = ("tasks",)
COLUMNS = ("title", "status", "priority")
TENANT = "acme"


class Entry(NamedTuple):
    seq: int
    tx: int
    table: str
    id: str
    hlc: int
    values: dict[str, Any]
    seen: dict[str, tuple[int, bytes]] | None


class FakeTime:
    """Milliseconds that move only when the test says so (shared by everyone)."""

    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


# --- the reference server ------------------------------------------------------------


class MemoryServer:
    def __init__(self, time: FakeTime):
        self.time = time
        self.rows: dict[tuple[str, str], dict[str, Cell]] = {}
        self.log: list[p.ServerTx] = []
        self.acked: dict[bytes, int] = {}
        self.merged_changes: list[tuple[bytes, int]] = []  # every (site, seq) merged, to prove "at most once"
        self.conflict_ids: set[str] = set()
        self.resolved: set[str] = set()
        self.sessions: list[ss.ServerSession] = []

    def merge(self, site: bytes, tx: p.LocalTx) -> None:
        written: dict[tuple[str, str], dict[str, tuple[Any, int, bytes]]] = {}
        conflicts = []
        for change in tx.changes:
            key = (change.table, change.id)
            current = self.rows.setdefault(key, {})
            incoming = {name: Cell(value, change.hlc, site) for name, value in change.values.items()}
            for name, cell in incoming.items():
                held = current.get(name)
                seen = None if change.seen is None else change.seen.get(name)
                if held is not None and held.value != cell.value and merge.is_concurrent(held, seen):
                    won = merge.wins(cell, held)
                    winner, loser = (cell, held) if won else (held, cell)
                    record = p.ConflictRecord(
                        id=f"c{len(self.conflict_ids) + 1}",
                        table=change.table,
                        row_id=change.id,
                        column=name,
                        winner_value=winner.value,
                        winner_hlc=winner.hlc,
                        winner_site=winner.site,
                        loser_value=loser.value,
                        loser_hlc=loser.hlc,
                        loser_site=loser.site,
                        incoming_won=won,
                    )
                    self.conflict_ids.add(record.id)
                    conflicts.append(record)
            merged, changed = merge.merge_row(current, incoming)
            self.rows[key] = merged
            for name in changed:
                written.setdefault(key, {})[name] = tuple(merged[name])  # type: ignore[assignment]
            self.merged_changes.append((site, change.seq))
        changes = [p.RowChange(t, i, cells) for (t, i), cells in written.items()]
        self.log.append(p.ServerTx(seq=len(self.log) + 1, changes=changes, conflicts=conflicts))

    def serve(self, session: ss.ServerSession, out: deque[p.Message]) -> bool:
        """Carry out the session's actions; False once it asks to close."""
        open_ = True
        while actions := session.actions():  # carrying out one may queue more
            open_ = self._carry_out(session, actions, out) and open_
        return open_

    def _carry_out(self, session: ss.ServerSession, actions: list[ss.Action], out: deque[p.Message]) -> bool:
        open_ = True
        for action in actions:
            if isinstance(action, ss.Send):
                out.append(action.message)
            elif isinstance(action, ss.Authenticate):
                identity = ss.Identity(TENANT, frozenset({"sync"}), None)
                session.accept(identity, acked_seq=self.acked.get(action.site, 0))
            elif isinstance(action, ss.Merge):
                site = session.site
                assert site is not None
                log_seq = 0
                for tx in action.txs:
                    if tx.changes[-1].seq > self.acked.get(site, 0):  # at most once per (site, seq)
                        self.merge(site, tx)
                        self.acked[site] = tx.changes[-1].seq
                        log_seq = len(self.log)
                session.merged(upto_seq=self.acked[site], log_seq=log_seq)
                for other in self.sessions:
                    other.notify()
            elif isinstance(action, ss.ReadLog):
                session.log_read([(tx.seq, tx) for tx in self.log if tx.seq > action.after], more=False)
            elif isinstance(action, ss.Resolve):
                self.resolved.update(action.conflict_ids)
                session.resolve_done(ok=True)
            elif isinstance(action, ss.Close):
                open_ = False
        return open_


# --- model replicas ----------------------------------------------------------------------


class ModelReplica:
    """Cells, a change log and persisted sync positions: what a replica keeps."""

    def __init__(self, site: bytes, time: FakeTime):
        self.site = site
        self.clock = HybridClock(now=time)
        self.rows: dict[tuple[str, str], dict[str, Cell]] = {}
        self.log: list[Entry] = []
        self.tx = 0
        self.acked = 0
        self.cursor = 0
        self.conflict_ids: set[str] = set()
        self.resolved_unreported: list[str] = []

    def write(self, key: tuple[str, str], values: dict[str, Any]) -> None:
        self.write_tx([(key, values)])

    def write_tx(self, writes: list[tuple[tuple[str, str], dict[str, Any]]]) -> None:
        """Several rows in one local transaction (a new row gets ``_deleted`` 0)."""
        self.tx += 1
        for key, values in writes:
            hlc = self.clock.tick()
            cells = self.rows.get(key)
            if cells is None:
                values = {**values, DELETED: 0}
                seen = None
            else:
                seen = {name: (cells[name].hlc, cells[name].site) if name in cells else (0, b"") for name in values}
            cells = self.rows.setdefault(key, {})
            for name, value in values.items():
                cells[name] = Cell(value, hlc, self.site)
            self.log.append(Entry(len(self.log) + 1, self.tx, key[0], key[1], hlc, dict(values), seen))

    def apply(self, tx: p.ServerTx) -> None:
        for change in tx.changes:
            cells = self.rows.setdefault((change.table, change.id), {})
            for name, cell in change.cells.items():
                incoming = Cell(*cell)
                cells[name] = merge.merge_cell(cells.get(name), incoming)  # type: ignore[assignment]
                self.clock.observe(incoming.hlc)
        self.conflict_ids.update(c.id for c in tx.conflicts)
        self.cursor = max(self.cursor, tx.seq)

    def visible(self) -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for key, cells in self.rows.items():
            if cells.get(DELETED, Cell(0, 0, b"")).value == 1:
                continue
            out[key] = {name: cell.value for name, cell in cells.items() if name != DELETED}
        return out


def persist(r: ModelReplica, event: cs.Event) -> None:
    """What the real driver does in one SQLite transaction per event."""
    if isinstance(event, cs.RemoteTx):
        r.apply(event.tx)  # also raises the cursor
    elif isinstance(event, cs.Acked):
        r.acked = max(r.acked, event.upto_seq)
    elif isinstance(event, cs.Welcomed):
        assert event.tenant == TENANT
        r.acked = event.acked_seq
    elif isinstance(event, cs.UpToDate):
        r.cursor = max(r.cursor, event.cursor)
    elif isinstance(event, cs.ResolutionsDelivered):
        r.resolved_unreported = [i for i in r.resolved_unreported if i not in event.conflict_ids]
    elif isinstance(event, cs.SessionError):
        raise AssertionError(f"server error: {event}")


# --- a connection between them -------------------------------------------------------------


class Link:
    """One connection: the two sessions and the two directions of the wire."""

    def __init__(self, replica: ModelReplica, server: MemoryServer, *, max_in_flight: int = 2, max_batch: int = 3):
        self.replica = replica
        self.server = server
        self.client = cs.ClientSession(
            token="t", site=replica.site, tables=TABLES, cursor=replica.cursor, acked_seq=replica.acked,
            max_in_flight=max_in_flight, max_batch=max_batch,
        )  # fmt: skip
        self.session = ss.ServerSession(tables=TABLES, max_batch=10)
        server.sessions.append(self.session)
        self.to_server: deque[p.Message] = deque()
        self.to_client: deque[p.Message] = deque()
        self.open = True
        self.resolutions_sent = False
        self.client.start()
        self._client_out()

    def close(self) -> None:
        self.open = False
        self.session.close()
        self.server.sessions.remove(self.session)

    def _client_out(self) -> None:
        if self.client.state is cs.State.READY:
            while self.client.can_push:
                pending = [e for e in self.replica.log if e.seq > self.client.pushed_seq]
                if not pending:
                    break
                self.client.push(cs.take_batch(cs.group_transactions(pending), self.client.max_batch))
            if not self.resolutions_sent:
                self.client.resolved(list(self.replica.resolved_unreported))
                self.resolutions_sent = True
        self.to_server.extend(self.client.messages_to_send())

    def client_step(self, *, duplicate: bool = False, rng: random.Random | None = None) -> None:
        message = self.to_client.popleft()
        if rng is not None and isinstance(message, p.Changes):
            txs = list(message.txs)
            rng.shuffle(txs)  # reordered delivery
            message = p.Changes(txs=txs)
        copies = 2 if duplicate and isinstance(message, (p.Changes, p.Ack, p.Pong)) else 1
        for _ in range(copies):
            self.client.receive(message)
            for event in self.client.events_received():
                self._persist(event)
        self._client_out()

    def _persist(self, event: cs.Event) -> None:
        persist(self.replica, event)

    def server_step(self, *, duplicate: bool = False) -> None:
        message = self.to_server.popleft()
        copies = 2 if duplicate and isinstance(message, p.Push) else 1
        for _ in range(copies):
            self.session.receive(message)
            if not self.server.serve(self.session, self.to_client):
                self.open = False
        # A merge on this link notifies every session: let them all answer.
        for link in LIVE_LINKS:
            if link is not self and link.open:
                link.server.serve(link.session, link.to_client)

    def settled(self) -> bool:
        return (
            self.client.settled
            and self.client.acked_seq >= len(self.replica.log)
            and not self.to_client
            and not self.to_server
            and not self.replica.resolved_unreported
        )

    def run_messy(self, *, duplicate: bool, rng: random.Random | None, cut: int | None) -> None:
        """Run towards settled with duplicated and/or shuffled delivery; stop
        after ``cut`` messages (the connection drops) when given."""
        delivered = 0
        while not self.settled() and self.open and (cut is None or delivered < cut):
            if self.to_server:
                self.server_step(duplicate=duplicate)
            elif self.to_client:
                self.client_step(duplicate=duplicate, rng=rng)
            else:
                self._client_out()
                if not self.to_server:
                    raise AssertionError(f"stuck: {self.client!r}")
            delivered += 1

    def run_clean(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if self.settled():
                return
            if self.to_server:
                self.server_step()
            elif self.to_client:
                self.client_step()
            else:
                self._client_out()
                if not self.to_server:
                    raise AssertionError(f"stuck: {self.client!r}")
        raise AssertionError("did not settle")


LIVE_LINKS: list[Link] = []


def make_world(n: int) -> tuple[FakeTime, MemoryServer, list[ModelReplica]]:
    time = FakeTime()
    server = MemoryServer(time)
    replicas = [ModelReplica(bytes([i + 1]) * 16, time) for i in range(n)]
    return time, server, replicas


def connect(replica: ModelReplica, server: MemoryServer, **kw: Any) -> Link:
    link = Link(replica, server, **kw)
    LIVE_LINKS.append(link)
    return link


def disconnect(link: Link) -> None:
    link.close()
    LIVE_LINKS.remove(link)


def settle_everyone(server: MemoryServer, replicas: list[ModelReplica]) -> None:
    for _ in range(2):  # the first pass pushes everything, the second pulls it everywhere
        for replica in replicas:
            link = connect(replica, server)
            link.run_clean()
            disconnect(link)


# --- tests -------------------------------------------------------------------------------------


ROW = ("tasks", "0190f6a4-0000-7000-8000-000000000001")


def test_one_write_reaches_the_other_replica():
    LIVE_LINKS.clear()
    time, server, (a, b) = make_world(2)
    a.write(ROW, {"title": "hello", DELETED: 0})
    settle_everyone(server, [a, b])
    assert b.visible() == a.visible() == {ROW: {"title": "hello"}}
    assert a.acked == 1 and server.acked[a.site] == 1


def test_live_changes_flow_to_a_connected_replica():
    LIVE_LINKS.clear()
    time, server, (a, b) = make_world(2)
    link_b = connect(b, server)
    link_b.run_clean()
    link_a = connect(a, server)
    link_a.run_clean()
    a.write(ROW, {"title": "live", DELETED: 0})
    link_a._client_out()
    link_a.run_clean()
    link_b.run_clean()
    assert b.visible() == {ROW: {"title": "live"}}
    disconnect(link_a)
    disconnect(link_b)


def test_a_lost_ack_is_not_merged_twice():
    LIVE_LINKS.clear()
    time, server, (a,) = make_world(1)
    a.write(ROW, {"title": "once", DELETED: 0})
    link = connect(a, server)
    while not any(isinstance(m, p.Ack) for m in link.to_client):
        if link.to_server:
            link.server_step()
        else:
            link.client_step()
    disconnect(link)  # the Ack is lost with the connection
    assert a.acked == 0
    link = connect(a, server)
    link.run_clean()
    disconnect(link)
    assert a.acked == 1
    assert server.merged_changes == [(a.site, 1)]


def test_concurrent_edits_leave_a_conflict_on_every_replica():
    LIVE_LINKS.clear()
    time, server, (a, b) = make_world(2)
    a.write(ROW, {"title": "base", DELETED: 0})
    settle_everyone(server, [a, b])
    time.ms += 1
    a.write(ROW, {"title": "from a"})
    time.ms += 1
    b.write(ROW, {"title": "from b"})
    for replica in (a, b):
        link = connect(replica, server)
        link.run_clean()
        disconnect(link)
    # b's push made the conflict, and b's round lasted until that log entry came back.
    assert b.conflict_ids == server.conflict_ids and len(server.conflict_ids) == 1
    settle_everyone(server, [a, b])
    assert a.visible() == b.visible() == {ROW: {"title": "from b"}}
    assert a.conflict_ids == b.conflict_ids == server.conflict_ids and len(server.conflict_ids) == 1


def test_resolutions_are_reported_until_the_server_has_read_them():
    LIVE_LINKS.clear()
    time, server, (a,) = make_world(1)
    a.resolved_unreported = ["c7"]
    link = connect(a, server)
    link.run_clean()
    disconnect(link)
    assert server.resolved == {"c7"} and a.resolved_unreported == []


keys = st.sampled_from([("tasks", f"0190f6a4-0000-7000-8000-00000000000{i}") for i in range(1, 9)])
values = st.sampled_from(["a", "b", "c", None])
rounds = st.tuples(st.just("round"), st.integers(0, 3), st.booleans(), st.booleans(), st.none() | st.integers(1, 8))
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.integers(0, 3),
            st.lists(st.tuples(keys, st.dictionaries(st.sampled_from(COLUMNS), values, min_size=1)), min_size=1, max_size=3),
        ),
        st.tuples(st.just("delete"), st.integers(0, 3), keys),
        st.tuples(st.just("connect"), st.integers(0, 3)),
        st.tuples(st.just("drop"), st.integers(0, 3)),
        st.tuples(st.just("pump"), st.integers(0, 3), st.integers(1, 12), st.booleans(), st.booleans()),
        rounds,
        rounds,  # twice: rounds are what move changes around
        st.tuples(st.just("tick"), st.integers(0, 5)),
    ),
    min_size=15,
    max_size=60,
)


@given(st.integers(2, 4), steps, st.randoms(use_true_random=False))
def test_any_schedule_converges(n, schedule, rng):
    LIVE_LINKS.clear()
    time, server, replicas = make_world(n)
    links: dict[int, Link] = {}
    for step in schedule:
        kind, who = step[0], step[1] % n if len(step) > 1 else 0
        replica = replicas[who]
        if kind == "write":
            replica.write_tx(step[2])
        elif kind == "delete" and step[2] in replica.visible():
            replica.write(step[2], {DELETED: 1})
        elif kind == "connect" and who not in links:
            links[who] = connect(replica, server)
        elif kind == "drop" and who in links:
            disconnect(links.pop(who))
        elif kind == "pump" and who in links:
            link = links[who]
            for _ in range(step[2]):  # deliver a few messages, the server's side first
                if link.to_server and link.open:
                    link.server_step(duplicate=step[3])
                if link.to_client:
                    link.client_step(duplicate=step[3], rng=rng if step[4] else None)
        elif kind == "round":  # a sync on a connection of its own, maybe cut after a few messages
            link = connect(replica, server)
            link.run_messy(duplicate=step[2], rng=rng if step[3] else None, cut=step[4])
            disconnect(link)
        elif kind == "tick":
            time.ms += step[1]
        for key, link in list(links.items()):
            if not link.open:
                disconnect(links.pop(key))
    for link in list(links.values()):
        disconnect(link)
    settle_everyone(server, replicas)

    expected = {key: {n: c.value for n, c in cells.items() if n != DELETED} for key, cells in server.rows.items() if cells.get(DELETED, Cell(0, 0, b"")).value != 1}
    for replica in replicas:
        assert replica.visible() == expected
        assert replica.acked == len(replica.log)
        assert replica.conflict_ids == server.conflict_ids
    merged = server.merged_changes
    assert len(merged) == len(set(merged)) == sum(len(r.log) for r in replicas)  # each change exactly once


def test_shuffled_delivery_loses_nothing():
    LIVE_LINKS.clear()
    time, server, (a, b) = make_world(2)
    rows = [("tasks", f"0190f6a4-0000-7000-8000-00000000001{i}") for i in range(6)]
    for row in rows:
        a.write(row, {"title": row[1][-2:]})
    settle_everyone(server, [a])
    link = connect(b, server)
    rng = random.Random(4)
    while not link.settled():
        if link.to_server:
            link.server_step()
        else:
            link.client_step(rng=rng)  # the six transactions arrive in a shuffled order
    disconnect(link)
    assert b.visible() == a.visible() and len(b.visible()) == 6
