"""The shared log tail: streams never miss an entry, a burst of wake-ups costs a
couple of reads, and a failed refresh is retried (live streams wait on no one)."""

from __future__ import annotations

import asyncio
import logging

import psycopg

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
