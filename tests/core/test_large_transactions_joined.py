"""Large transactions with the client and server sessions joined in memory.

The reference server of :mod:`tests.core.test_sessions_joined` learns to
stage parts (a transaction larger than ``max_batch`` comes in parts, merged
whole with the last one) and to log every merged transaction as a group of
entries of at most two row changes. The model replicas keep a group's parts
aside and apply them whole, as the real driver does. Under cuts, duplicated
and shuffled delivery, at every step each replica shows all of another
replica's transaction or none of it; once everyone syncs cleanly, every
replica holds what the server holds and every change was merged exactly once.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncstore.core import client_session as cs
from syncstore.core import protocol as p
from syncstore.core import server_session as ss
from syncstore.core.merge import DELETED, Cell

from .test_sessions_joined import TABLES, TENANT, FakeTime, Link, MemoryServer, ModelReplica, persist

ENTRY_CHANGES = 2  # row changes per log entry: any transaction of more is a group
MAX_BATCH = 3  # changes per push: any transaction of more goes in parts


class StagingServer(MemoryServer):
    def __init__(self, time: FakeTime):
        super().__init__(time)
        self.staged: dict[bytes, dict[int, p.LocalChange]] = {}
        self.groups: list[list[int]] = []  # the positions of each group logged

    def staged_seq(self, site: bytes) -> int:
        found = self.staged.get(site)
        return max(found) if found else 0

    def merge(self, site: bytes, tx: p.LocalTx) -> None:
        super().merge(site, tx)
        whole = self.log.pop()
        changes = whole.changes
        pieces = [changes[i : i + ENTRY_CHANGES] for i in range(0, len(changes), ENTRY_CHANGES)] or [[]]
        first = len(self.log) + 1
        end = first + len(pieces) - 1
        for k, piece in enumerate(pieces):
            conflicts = whole.conflicts if k == 0 else []
            self.log.append(p.ServerTx(seq=first + k, changes=piece, conflicts=conflicts, group_end=end if end > first else 0))
        self.groups.append(list(range(first, end + 1)))

    def _carry_out(self, session: ss.ServerSession, actions: list[ss.Action], out: deque[p.Message]) -> bool:
        rest: list[ss.Action] = []
        for action in actions:
            if isinstance(action, ss.Authenticate):
                identity = ss.Identity(TENANT, frozenset({"sync"}), None)
                session.accept(identity, acked_seq=self.acked.get(action.site, 0), staged_seq=self.staged_seq(action.site))
            elif isinstance(action, ss.Merge) and action.txs[0].is_part:
                self._stage(session, action.txs[0])
            else:
                rest.append(action)
        return super()._carry_out(session, rest, out) if rest else True

    def _stage(self, session: ss.ServerSession, part: p.LocalTx) -> None:
        site = session.site
        assert site is not None
        acked = self.acked.get(site, 0)
        if part.end_seq <= acked:
            self.staged.pop(site, None)
            session.merged(upto_seq=acked)
            return
        staged = self.staged.setdefault(site, {})
        staged.update((c.seq, c) for c in part.changes if c.seq > acked)
        if part.changes[-1].seq < part.end_seq:
            session.merged(upto_seq=acked, staged_seq=max(staged))
            return
        assert len(staged) == part.total, "the parts add up to the transaction"
        self.merge(site, p.LocalTx(part.tx, [staged[k] for k in sorted(staged)]))
        del self.staged[site]
        self.acked[site] = part.end_seq
        session.merged(upto_seq=part.end_seq, log_seq=len(self.log))
        for other in self.sessions:
            other.notify()


class GroupReplica(ModelReplica):
    """A model replica that keeps a group's parts aside until it is whole."""

    def __init__(self, site: bytes, time: FakeTime):
        super().__init__(site, time)
        self.kept: dict[int, p.ServerTx] = {}
        self.origins: dict[int, set[tuple[str, str]]] = {}  # local tx -> the rows it inserted

    def write_rows(self, count: int) -> None:
        rows = [("tasks", str(uuid.uuid4())) for _ in range(count)]
        self.write_tx([(row, {"title": "x"}) for row in rows])
        self.origins[self.tx] = set(rows)


def persist_groups(replica: GroupReplica, event: cs.Event) -> None:
    if isinstance(event, cs.RemotePart):
        replica.kept[event.tx.seq] = event.tx
    elif isinstance(event, cs.RemoteGroup):
        for seq in sorted(replica.kept):
            if event.first <= seq <= event.end:
                replica.apply(replica.kept.pop(seq))
        replica.cursor = max(replica.cursor, event.end)
    else:
        persist(replica, event)


class PartsLink(Link):
    def __init__(self, replica: GroupReplica, server: StagingServer, **kw: Any):
        replica.kept.clear()  # a new connection: the cursor is before any group not applied
        super().__init__(replica, server, max_batch=MAX_BATCH, **kw)
        server.sessions.remove(self.session)
        self.session = ss.ServerSession(tables=TABLES, max_batch=10, max_staged=1_000)
        server.sessions.append(self.session)
        self.world: list[GroupReplica] = []

    def _client_out(self) -> None:
        client = self.client
        if client.state is cs.State.READY:
            while client.can_push:
                batch = next_push(client, self.replica.log)
                if not batch:
                    break
                client.push(batch)
        self.to_server.extend(client.messages_to_send())

    def _persist(self, event: cs.Event) -> None:
        persist_groups(self.replica, event)  # type: ignore[arg-type]
        for writer in self.world:
            check_whole(self.replica, writer)  # type: ignore[arg-type]


def next_push(client: cs.ClientSession, log: list[Any]) -> list[p.LocalTx]:
    """What the real driver pushes next: whole transactions, or the next part of a large one."""
    pending = [e for e in log if e.seq > client.pushed_seq]
    if not pending:
        return []
    first = pending[0]
    whole = [e for e in log if e.tx == first.tx]
    if client.max_staged and (len(whole) > client.max_batch or first.seq > whole[0].seq):
        chunk = [e for e in pending if e.tx == first.tx][: client.max_batch]
        return [p.LocalTx(first.tx, cs.group_transactions(chunk)[0].changes, whole[-1].seq, len(whole))]
    return cs.take_batch(cs.group_transactions(pending), client.max_batch)


def check_whole(replica: GroupReplica, writer: GroupReplica) -> None:
    """``replica`` holds all the rows of each of ``writer``'s transactions, or none."""
    held = set(replica.rows)
    for tx, rows in writer.origins.items():
        shown = rows & held
        assert not shown or shown == rows, f"half of transaction {tx}: {len(shown)} of {len(rows)} rows"


steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 2), st.integers(1, 9)),
        st.tuples(st.just("round"), st.integers(0, 2), st.booleans(), st.booleans(), st.none() | st.integers(1, 12)),
        st.tuples(st.just("round"), st.integers(0, 2), st.booleans(), st.booleans(), st.none() | st.integers(1, 12)),
        st.tuples(st.just("tick"), st.integers(0, 5)),
    ),
    min_size=5,
    max_size=30,
)


@given(st.integers(2, 3), steps, st.randoms(use_true_random=False))
def test_large_transactions_reach_everyone_whole_under_any_schedule(n, schedule, rng):
    time = FakeTime()
    server = StagingServer(time)
    replicas = [GroupReplica(bytes([i + 1]) * 16, time) for i in range(n)]

    def round_(replica: GroupReplica, **kw: Any) -> None:
        link = PartsLink(replica, server)
        link.world = replicas
        from .test_sessions_joined import LIVE_LINKS

        LIVE_LINKS.append(link)
        try:
            link.run_messy(**kw)
        finally:
            link.close()
            LIVE_LINKS.remove(link)

    for step in schedule:
        kind = step[0]
        if kind == "write":
            replicas[step[1] % n].write_rows(step[2])
        elif kind == "round":
            round_(replicas[step[1] % n], duplicate=step[2], rng=rng if step[3] else None, cut=step[4])
        elif kind == "tick":
            time.ms += step[1]
    for _ in range(2):  # the first pass pushes everything, the second pulls it everywhere
        for replica in replicas:
            round_(replica, duplicate=False, rng=None, cut=None)

    expected = {key: {k: c.value for k, c in cells.items() if k != DELETED} for key, cells in server.rows.items()
                if cells.get(DELETED, Cell(0, 0, b"")).value != 1}  # fmt: skip
    for replica in replicas:
        assert replica.visible() == expected and not replica.kept
        assert replica.acked == len(replica.log)
    merged = server.merged_changes
    assert len(merged) == len(set(merged)) == sum(len(r.log) for r in replicas)  # each change exactly once
    assert not server.staged
    large = any(len(rows) > ENTRY_CHANGES for r in replicas for rows in r.origins.values())
    assert any(len(group) > 1 for group in server.groups) == large  # the schedule had groups to deliver
