"""A reader of the change log never skips an entry that commits late.

A sequence hands out numbers when drawn, not when committed: if the push that
drew 7 commits after the one that drew 8, a reader that saw 8 moves its cursor
past 7 and never sees it. The first test shows that this hazard is real on
this PostgreSQL (a naive append to the same log table loses an entry); the
second runs the store's own merge path and shows the tenant's log lock makes
the later push wait for the earlier one to commit, so the reader sees both.
"""

from __future__ import annotations

import asyncio

import msgspec
import psycopg

from syncstore.core import protocol as p

from syncstore_server.store import open_store

from .helpers import insert, new_id, site, stamp

TENANT = "late"


class Reader:
    """A client's view of the log: reads after its cursor, moves the cursor to the last entry seen."""

    def __init__(self, store):
        self.store = store
        self.cursor = 0
        self.seen: list[int] = []

    async def poll(self) -> None:
        entries, _ = await self.store.read_log(TENANT, self.cursor)
        for seq, _tx in entries:
            self.seen.append(seq)
            self.cursor = seq


def test_without_the_lock_a_late_commit_is_skipped(migrated):
    """The control: what a naive append does, on the same table and sequence."""

    async def main():
        async with open_store(migrated) as store:
            reader = Reader(store)
            first = await psycopg.AsyncConnection.connect(migrated)
            second = await psycopg.AsyncConnection.connect(migrated)
            append = (
                "INSERT INTO syncstore.change_log (seq, tenant, origin_site, origin_tx, tables, payload) "
                "VALUES (nextval('syncstore.change_log_seq'), %s, %s, 1, '{tasks}', %s) RETURNING seq"
            )
            payload = msgspec.msgpack.encode(p.ServerTx(0, []))
            async with first, second:
                early = (await (await first.execute(append, (TENANT, site(1), payload))).fetchone())[0]
                late = (await (await second.execute(append, (TENANT, site(2), payload))).fetchone())[0]
                assert early < late
                await second.commit()  # the later number commits first
                await reader.poll()
                await first.commit()
                await reader.poll()
            return early, late, reader.seen

    early, late, seen = asyncio.run(main())
    assert seen == [late]  # the entry that committed late was passed over for good
    assert early not in seen


def test_the_store_makes_later_pushes_wait_so_no_reader_skips(migrated):
    async def main():
        async with open_store(migrated, pool_size=4) as store:
            reader = Reader(store)
            holding = asyncio.Event()
            release = asyncio.Event()

            async def hold_before_commit(conn):
                # Runs inside the first push's transaction, after it drew its
                # log position and wrote its entry: the commit waits for us.
                holding.set()
                await release.wait()

            h = stamp()
            first = asyncio.create_task(
                store.merge(TENANT, site(1), [p.LocalTx(1, [insert(1, new_id(), h, title="first")])], also=hold_before_commit)
            )
            await holding.wait()
            second = asyncio.create_task(
                store.merge(TENANT, site(2), [p.LocalTx(1, [insert(1, new_id(), h + 1, title="second")])])
            )
            # Wait until the second push is blocked on the tenant's log lock
            # (a state we can see in pg_locks, not a guess about time).
            # Without the lock the second push would commit instead: stop then too.
            async with await psycopg.AsyncConnection.connect(migrated, autocommit=True) as watch:
                while not second.done():
                    cur = await watch.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                    if (await cur.fetchone())[0] >= 1:
                        break
                    await asyncio.sleep(0.01)
            await reader.poll()  # neither has committed: the reader sees nothing
            seen_while_open = list(reader.seen)
            assert not second.done()  # the later push cannot commit before the earlier one
            release.set()
            results = await asyncio.gather(first, second)
            await reader.poll()
            return seen_while_open, reader.seen, [r.positions[0] for r in results]

    seen_while_open, seen, positions = asyncio.run(main())
    assert seen_while_open == []
    assert positions[0] < positions[1]  # the earlier push holds the earlier position...
    assert seen == positions  # ...and the reader saw both, in order
