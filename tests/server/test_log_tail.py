"""The shared log tail: streams never miss an entry, a burst of wake-ups costs a
couple of reads, and a failed refresh is retried (live streams wait on no one)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid

import psycopg
from hypothesis import example, given
from hypothesis import strategies as st

from syncstore.core import protocol as p
from syncstore.core import shapes as sh

from syncstore_server.log_tail import LogTail
from syncstore_server.router import Router
from syncstore_server.store import open_store

from .helpers import insert, new_id, site, stamp

TENANT = "tail"


class CountingStore:
    """The real store, counting how often the log is read."""

    def __init__(self, store):
        self._store = store
        self.reads = 0

    async def read_entries(self, tenant, after, *, limit):
        self.reads += 1
        return await self._store.read_entries(tenant, after, limit=limit)


async def push(store, k: int, h: int) -> int:
    result = await store.merge(TENANT, site(1), [p.LocalTx(k, [insert(k, new_id(), h + k)])])
    return result.positions[0]


def test_a_burst_of_streams_shares_reads_and_every_stream_sees_every_entry(migrated):
    async def main():
        async with open_store(migrated, pool_size=4) as store:
            counting = CountingStore(store)
            tail = LogTail(counting)
            h = stamp()
            first = await push(store, 1, h)
            assert (await tail.read(TENANT, 0, limit=100)).entries[0].seq == first  # reaches the end: the cache starts
            cursors = [first] * 200
            expected = []
            for k in range(2, 6):
                expected.append(await push(store, k, h))
                before = counting.reads
                results = await asyncio.gather(*(tail.read(TENANT, c, limit=100) for c in cursors))
                assert counting.reads - before <= 2  # not one read per stream
                for i, found in enumerate(results):
                    assert not found.more and found.head == expected[-1]
                    assert [e.seq for e in found.entries] == [expected[-1]]  # exactly the new entry
                    cursors[i] = found.entries[-1].seq
            return cursors, expected

    cursors, expected = asyncio.run(main())
    assert set(cursors) == {expected[-1]}


def test_reads_interleaved_with_commits_never_skip_an_entry(migrated):
    async def main():
        async with open_store(migrated, pool_size=6) as store:
            tail = LogTail(store, keep=5, fetch=3)  # small, so trimming and paging happen
            h = stamp()
            seen: dict[int, list[int]] = {i: [] for i in range(5)}
            cursors = dict.fromkeys(range(5), 0)
            done = asyncio.Event()

            async def stream(i: int) -> None:
                while True:
                    finished = done.is_set()
                    entries, more, _, _ = await tail.read(TENANT, cursors[i], limit=2)
                    for entry in entries:
                        seen[i].append(entry.seq)
                        cursors[i] = entry.seq
                    if finished and not more and not entries:
                        return
                    await asyncio.sleep(0)

            async def writer() -> list[int]:
                positions = []
                for k in range(1, 31):
                    positions.append(await push(store, k, h))
                done.set()
                return positions

            streams = [asyncio.create_task(stream(i)) for i in range(5)]
            positions = await writer()
            await asyncio.gather(*streams)
            return seen, positions

    seen, positions = asyncio.run(main())
    for sequence in seen.values():
        assert sequence == positions  # every entry, once, in order


class FailingOnce:
    """The real store, whose next log read fails as a lost connection would."""

    def __init__(self, store):
        self._store = store
        self.fail_next = False

    async def read_entries(self, tenant, after, *, limit):
        if self.fail_next:
            self.fail_next = False
            raise psycopg.OperationalError("the connection was lost (injected by the test)")
        return await self._store.read_entries(tenant, after, limit=limit)


class Stream:
    """A live stream as the router sees it."""

    def __init__(self):
        self.seqs: list[int] = []
        self.arrived = asyncio.Event()

    def deliver(self, entries):
        self.seqs.extend(seq for seq, _ in entries)
        self.arrived.set()


def test_a_failed_refresh_is_retried_so_live_streams_still_get_the_commit(migrated, caplog):
    """The refresh a commit's notification starts fails: without a retry the
    live streams would wait for the tenant's next commit, however long."""

    async def main():
        async with open_store(migrated, pool_size=4) as store:
            flaky, router = FailingOnce(store), Router()
            tail = LogTail(flaky, router=router, retry_s=0.05)
            head = (await tail.read(TENANT, 0, limit=100)).head  # reaches the end: the cache starts
            stream = Stream()
            router.register(stream, TENANT, [sh.check_shape(p.Shape("tasks"))])  # live from head
            seq = await push(store, 1, stamp())
            flaky.fail_next = True
            tail.poke(TENANT)  # the commit is heard; this refresh fails
            await asyncio.wait_for(stream.arrived.wait(), 5)
            return head, seq, stream.seqs

    with caplog.at_level(logging.WARNING, logger="syncstore.server.log_tail"):
        head, seq, seqs = asyncio.run(main())
    assert seq > head and seqs == [seq]
    assert any("trying again" in r.getMessage() for r in caplog.records)


# --- streams that adopt the read's head, as ServerSession does -----------------------


HOLD: contextvars.ContextVar[bool] = contextvars.ContextVar("hold", default=False)


class GatedStore:
    """The real store, whose log reads can be held after they ran: the query
    sees the database as it is when called, the caller gets its answer only
    when the test releases it (so commits and other reads can happen between).
    A read is held when the task that makes it runs with HOLD set (a task
    inherits it from the code that created it: a refresh from its poke or read)."""

    def __init__(self, store):
        self._store = store
        self.held: list[asyncio.Event] = []
        self.running = 0  # queries in progress
        self.calls = 0

    async def read_entries(self, tenant, after, *, limit):
        self.calls += 1
        self.running += 1
        try:
            found = await self._store.read_entries(tenant, after, limit=limit)
        finally:
            self.running -= 1
        if HOLD.get():
            gate = asyncio.Event()
            self.held.append(gate)
            await gate.wait()
        return found

    def release(self, index: int = 0) -> None:
        self.held.pop(index).set()

    async def settle(self) -> None:
        """Run until every read is held or answered (nothing is in the database)."""
        quiet = 0
        while quiet < 5:
            calls = self.calls
            await asyncio.sleep(0 if self.running == 0 else 0.001)
            quiet = quiet + 1 if self.running == 0 and calls == self.calls else 0


def held(make):
    """Call ``make()`` (which creates a task) with the reads of that task held."""
    token = HOLD.set(True)
    try:
        return make()
    finally:
        HOLD.reset(token)


class AdoptingStream:
    """A stream driven as :class:`ServerSession` drives one: it reads from its
    position until a read is complete, then adopts the read's ``head`` as its
    position and goes live at it (registering with the router in the same step),
    after which it takes only what the router delivers beyond its position."""

    def __init__(self, tail: LogTail, tenant: str):
        self.tail = tail
        self.tenant = tenant
        self.position = 0
        self.received: list[int] = []
        self.live = False

    def _take(self, seqs) -> None:
        for seq in seqs:
            if seq > self.position:
                self.received.append(seq)
                self.position = seq

    async def read_once(self) -> None:
        found = await self.tail.read(self.tenant, self.position, limit=2)
        self._take(entry.seq for entry in found.entries)
        if found.more:
            return
        self.position = max(self.position, found.head)
        self.live = True
        self.tail.router.register(self, self.tenant, [sh.check_shape(p.Shape("tasks"))])
        head = self.tail.head(self.tenant)
        if head is not None and head > self.position:
            self.tail.poke(self.tenant)  # as the handler does when the cache moved on

    async def catch_up(self) -> None:
        while not self.live:
            await self.read_once()

    def deliver(self, entries) -> None:
        self._take(seq for seq, _ in entries)


async def push_to(store, tenant: str, k: int, h: int) -> int:
    result = await store.merge(tenant, site(1), [p.LocalTx(k, [insert(k, new_id(), h + k)])])
    return result.positions[0]


async def drain(tail: LogTail, tenant: str) -> None:
    """Wait for a refresh that started after every commit so far (it routes
    them); with no cache yet, read to the end, which starts it."""
    head = tail.head(tenant)
    if head is not None:
        await tail.read(tenant, head, limit=1)
        return
    after, more = 0, True
    while more:
        found = await tail.read(tenant, after, limit=100)
        after, more = found.entries[-1].seq if found.entries else after, found.more


def test_two_first_reads_at_once_never_skip_what_commits_between_them(migrated):
    """Stream A's first read hits the database, then two entries commit and
    stream B's first read reaches the end and starts the cache there. A's
    read, answered after, must not report B's head: A would adopt it and the
    two entries between would reach no one."""

    async def main():
        async with open_store(migrated, pool_size=4) as store:
            gated = GatedStore(store)
            tail = LogTail(gated)
            h = stamp()
            positions = [await push_to(store, TENANT, 1, h)]
            a, b = AdoptingStream(tail, TENANT), AdoptingStream(tail, TENANT)
            first = held(lambda: asyncio.create_task(a.read_once()))  # reads the database now, answered later
            await gated.settle()
            positions += [await push_to(store, TENANT, k, h) for k in (2, 3)]
            await b.catch_up()
            gated.release()
            await first
            await a.catch_up()
            positions.append(await push_to(store, TENANT, 4, h))
            tail.poke(TENANT)
            await drain(tail, TENANT)
            return positions, a.received, b.received

    positions, a, b = asyncio.run(main())
    assert b == positions
    assert a == positions  # before the fix: the two entries committed between the reads were skipped


def test_a_database_read_answered_after_the_cache_was_trimmed_past_it_never_skips(migrated):
    """A stream behind the cache reads from the database; while its answer is
    on the way, enough commits arrive for the cache to drop the entries after
    the end of that answer. The read must not go on with the cache's entries."""

    async def main():
        async with open_store(migrated, pool_size=4) as store:
            gated = GatedStore(store)
            tail = LogTail(gated, keep=2, fetch=2)
            h = stamp()
            positions = [await push_to(store, TENANT, 1, h)]
            await drain(tail, TENANT)  # the cache starts after the first entry
            behind = AdoptingStream(tail, TENANT)  # at 0: before the cache, so it reads the database
            first = held(lambda: asyncio.create_task(behind.read_once()))
            await gated.settle()
            positions += [await push_to(store, TENANT, k, h) for k in range(2, 6)]
            await drain(tail, TENANT)  # the cache keeps the newest two: it starts past the read's end
            gated.release()
            await first
            await behind.catch_up()
            positions.append(await push_to(store, TENANT, 6, h))
            tail.poke(TENANT)
            await drain(tail, TENANT)
            return positions, behind.received

    positions, received = asyncio.run(main())
    assert received == positions


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(1, 3), st.just(False)),
        st.tuples(st.just("read"), st.integers(0, 2), st.booleans()),
        st.tuples(st.just("read"), st.integers(0, 2), st.just(True)),
        st.tuples(st.just("release"), st.integers(0, 5), st.just(False)),
        st.tuples(st.just("poke"), st.just(0), st.booleans()),
    ),
    max_size=25,
)


@given(steps=STEPS)
# Two first reads at once, the held one answered last; a read from the
# database answered after the cache was trimmed past its end.
@example(steps=[("read", 0, True), ("commit", 1, False), ("read", 1, False)])
@example(steps=[("commit", 1, False), ("read", 0, False), ("read", 1, True), ("commit", 3, False), ("commit", 3, False), ("poke", 0, False)])
def test_any_interleaving_of_reads_refreshes_trims_and_commits_delivers_every_entry_once(shared_database, steps):
    """Three streams of one tenant, adopting each read's head as ServerSession
    does; reads (a stream's, or the refresh a read or a commit's poke starts)
    answered in any order relative to commits, to other streams' reads and to
    the refreshes (which trim a small cache): each stream ends with every
    committed entry, once, in order."""
    tenant = f"il-{uuid.uuid4().hex[:12]}"

    async def main():
        async with open_store(shared_database, pool_size=4) as store:
            gated = GatedStore(store)
            tail = LogTail(gated, keep=3, fetch=2)
            h = stamp()
            streams = [AdoptingStream(tail, tenant) for _ in range(3)]
            reading: dict[int, asyncio.Task[None]] = {}
            positions: list[int] = []
            k = 0
            for op, arg, hold in steps:
                if op == "commit":
                    for _ in range(arg):
                        k += 1
                        positions.append(await push_to(store, tenant, k, h))
                elif op == "read":
                    task = reading.get(arg)
                    if not streams[arg].live and (task is None or task.done()):
                        start = streams[arg].catch_up
                        reading[arg] = held(lambda: asyncio.create_task(start())) if hold else asyncio.create_task(start())
                elif op == "release" and gated.held:
                    gated.release(arg % len(gated.held))
                elif op == "poke":
                    held(lambda: tail.poke(tenant)) if hold else tail.poke(tenant)
                await gated.settle()
            while gated.held or not all(task.done() for task in reading.values()):
                while gated.held:
                    gated.release()
                await gated.settle()
            for task in reading.values():
                await task  # a read that failed fails the test
            for stream in streams:
                await stream.catch_up()
            tail.poke(tenant)
            await drain(tail, tenant)
            return positions, [stream.received for stream in streams]

    positions, received = asyncio.run(main())
    for seqs in received:
        assert seqs == positions
