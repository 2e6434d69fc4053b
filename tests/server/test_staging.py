"""Large transactions in the change store: parts staged, merged whole; groups of log entries.

Against the machine's PostgreSQL (a fresh migrated database per module).
"""

from __future__ import annotations

import asyncio
import datetime as dt

import msgspec
import psycopg
import pytest

from syncstore.core import protocol as p
from syncstore.core import shapes
from syncstore.errors import SyncError

from syncstore_server import compaction, log_entries, staging
from syncstore_server.log_tail import LogTail
from syncstore_server.store import open_store

from .helpers import insert, new_id, site, stamp

A = site(1)
_decode = msgspec.msgpack.Decoder(p.ServerTx).decode


def run(coro):
    return asyncio.run(coro)


def rows(n: int, *, first_seq: int = 1, size: int = 40) -> list[p.LocalChange]:
    h = stamp()
    return [insert(first_seq + i, new_id(), h + i, title="t" * size) for i in range(n)]


def parts(tx: int, changes: list[p.LocalChange], size: int) -> list[p.LocalTx]:
    end = changes[-1].seq
    return [p.LocalTx(tx, changes[i : i + size], end, len(changes)) for i in range(0, len(changes), size)]


def pg(url: str, sql: str, *params):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def count(url: str, tenant: str, table: str = "tasks") -> int:
    return pg(url, f"SELECT count(*) FROM syncstore.{table} WHERE tenant = %s", tenant)[0][0]


def staged(url: str, tenant: str) -> tuple[int, int]:
    changes = pg(url, "SELECT count(*) FROM syncstore.staged_changes WHERE tenant = %s", tenant)[0][0]
    found = pg(url, "SELECT staged_seq FROM syncstore.staged_transactions WHERE tenant = %s", tenant)
    return changes, found[0][0] if found else 0


def log(url: str, tenant: str) -> list[tuple[int, p.ServerTx]]:
    found = pg(url, "SELECT seq, payload FROM syncstore.change_log WHERE tenant = %s ORDER BY seq", tenant)
    return [(seq, _decode(payload)) for seq, payload in found]


async def push_all(store, tenant: str, txs: list[p.LocalTx]):
    return [await store.merge(tenant, A, [tx]) for tx in txs]


def test_parts_are_staged_then_merged_whole_in_one_group(shared_database):
    url, tenant = shared_database, "whole"
    changes = rows(50)
    pieces = parts(7, changes, 10)

    async def main():
        async with open_store(url, max_entry_bytes=2_000) as store:
            staged_results = await push_all(store, tenant, pieces[:-1])
            during = (count(url, tenant), staged(url, tenant), await store.site_position(tenant, A))
            last = await store.merge(tenant, A, [pieces[-1]])
            return staged_results, during, last

    staged_results, (shown, held, position), last = run(main())
    assert [r.staged_seq for r in staged_results] == [10, 20, 30, 40] and {r.upto_seq for r in staged_results} == {0}
    assert shown == 0 and held == (40, 40) and position == (0, b"", 40)  # nothing merged, all of it staged
    assert last.upto_seq == 50 and last.staged_seq == 0 and last.row_changes == 50
    assert count(url, tenant) == 50 and staged(url, tenant) == (0, 0)
    entries = log(url, tenant)
    assert [seq for seq, _ in entries] == last.positions and len(entries) > 1
    assert all(tx.group_end == entries[-1][0] and tx.seq == seq for seq, tx in entries)
    assert sum(len(tx.changes) for _, tx in entries) == 50
    assert {c.id for _, tx in entries for c in tx.changes} == {c.id for c in changes}
    assert max(o for (o,) in pg(url, "SELECT octet_length(payload) FROM syncstore.change_log WHERE tenant = %s", tenant)) <= 2_000


def test_a_part_sent_again_replaces_itself_and_the_count_stays_exact(shared_database):
    url, tenant = shared_database, "again"
    pieces = parts(3, rows(30), 10)

    async def main():
        async with open_store(url) as store:
            await push_all(store, tenant, [pieces[0], pieces[1], pieces[0], pieces[1]])  # a reconnect resends
            assert staged(url, tenant) == (20, 20)
            last = await store.merge(tenant, A, [pieces[2]])
            again = await store.merge(tenant, A, [pieces[1]])  # after the merge: merged before, nothing staged
            return last, again

    last, again = run(main())
    assert last.upto_seq == 30 and count(url, tenant) == 30
    assert again.upto_seq == 30 and again.staged_seq == 0 and again.positions == []
    assert staged(url, tenant) == (0, 0) and len({tx.seq for _, tx in log(url, tenant)}) == len(log(url, tenant))


def test_parts_that_do_not_add_up_are_dropped_and_sent_again(shared_database):
    url, tenant = shared_database, "short"
    pieces = parts(3, rows(30), 10)

    async def main():
        async with open_store(url) as store:
            await store.merge(tenant, A, [pieces[0]])  # the middle part never comes
            with pytest.raises(SyncError, match="not the 30"):
                await store.merge(tenant, A, [pieces[2]])
            assert staged(url, tenant) == (0, 0) and count(url, tenant) == 0
            return await push_all(store, tenant, pieces)  # the client starts the transaction over

    results = run(main())
    assert results[-1].upto_seq == 30 and count(url, tenant) == 30


def test_a_bad_part_refuses_the_whole_transaction_and_acks_past_it(shared_database):
    url, tenant = shared_database, "refused"
    changes = rows(30)
    bad = changes[15]
    changes[15] = p.LocalChange(bad.seq, bad.table, bad.id, bad.hlc, {**bad.values, "status": "no such status"})
    pieces = parts(4, changes, 10)

    async def main():
        async with open_store(url) as store:
            return await push_all(store, tenant, pieces)

    first, second, third = run(main())
    assert first.staged_seq == 10
    assert second.upto_seq == 30 and [r.tx for r in second.rejected] == [4] and second.rejected[0].code == "bad_value"
    assert third.upto_seq == 30 and third.positions == []  # the rest is past the ack: nothing staged
    assert count(url, tenant) == 0 and staged(url, tenant) == (0, 0)
    (rejection,) = pg(url, "SELECT tx, first_seq, last_seq, code FROM syncstore.rejections WHERE tenant = %s", tenant)
    assert rejection == (4, 11, 30, "bad_value")


def test_a_transaction_over_the_limit_is_refused_at_its_first_part(shared_database):
    url, tenant = shared_database, "limit"
    pieces = parts(5, rows(30), 10)

    async def main():
        async with open_store(url, max_staged_changes=25) as store:
            return await store.merge(tenant, A, [pieces[0]])

    result = run(main())
    assert result.upto_seq == 30 and result.rejected[0].code == "tx_too_large" and "at most 25" in result.rejected[0].message
    assert staged(url, tenant) == (0, 0)


def test_a_new_transaction_drops_what_another_left_staged(shared_database):
    url, tenant = shared_database, "abandoned"
    old = parts(1, rows(30), 10)
    new = parts(2, rows(20), 10)  # the same sequences, another transaction (a copied replica)

    async def main():
        async with open_store(url) as store:
            await store.merge(tenant, A, [old[0]])
            return await push_all(store, tenant, new)

    results = run(main())
    assert results[-1].upto_seq == 20 and count(url, tenant) == 20 and staged(url, tenant) == (0, 0)


def test_staged_parts_left_longer_than_the_retention_go(shared_database):
    url, tenant = shared_database, "stale"
    pieces = parts(1, rows(20), 10)

    async def main():
        async with open_store(url) as store:
            await store.merge(tenant, A, [pieces[0]])
            await staging.forget_stale(store, older_than_s=3600)
            recent = staged(url, tenant)
            with psycopg.connect(url) as conn:
                conn.execute(
                    "UPDATE syncstore.staged_transactions SET updated_at = %s WHERE tenant = %s",
                    (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2), tenant),
                )
            await compaction.compact(store, retention_s=86_400)  # every tenant: then staged leftovers too
            return recent

    assert run(main()) == (10, 10)  # a recent one stays
    assert staged(url, tenant) == (0, 0)


def test_a_whole_push_larger_than_an_entry_is_logged_as_a_group(shared_database):
    url, tenant = shared_database, "bigpush"
    changes = rows(40, size=200)

    async def main():
        async with open_store(url, max_entry_bytes=3_000) as store:
            return await store.merge(tenant, A, [p.LocalTx(9, changes)])

    result = run(main())
    entries = log(url, tenant)
    assert len(entries) > 1 and [seq for seq, _ in entries] == result.positions
    assert all(tx.group_end == entries[-1][0] for _, tx in entries)


def test_log_reads_stop_after_max_bytes_and_the_tail_keeps_few_changes(shared_database):
    url, tenant = shared_database, "bytes"

    async def main():
        async with open_store(url, max_entry_bytes=2_000) as store:
            await store.merge(tenant, A, [p.LocalTx(1, rows(60, size=100))])
            everything, more, _ = await store.read_entries(tenant, 0, limit=1_000, max_bytes=1 << 30)
            some, more_some, _ = await store.read_entries(tenant, 0, limit=1_000, max_bytes=4_000)
            tail = LogTail(store, keep_changes=25)
            found = await tail.read(tenant, 0, limit=1_000)
            first = await tail.read(tenant, everything[-1].seq, limit=1_000)  # creates the cache
            tail.poke(tenant)
            again = await tail.read(tenant, everything[-1].seq, limit=1_000)
            return everything, more, some, more_some, found, first, again, tail

    everything, more, some, more_some, found, first, again, tail = run(main())
    assert len(everything) > 3 and not more
    assert 1 <= len(some) < len(everything) and more_some
    assert sum(len(e.tx.changes) for e in tail._tails["bytes"].entries) <= 25
    assert found.entries and first.head == again.head == everything[-1].seq


def test_compaction_keeps_the_group_of_each_entry():
    tx = p.ServerTx(seq=5, changes=[p.RowChange("tasks", "r", {"title": ("a", 1, A)})], group_end=7)
    newer = p.ServerTx(seq=6, changes=[p.RowChange("tasks", "r", {"title": ("b", 2, A)}),
                                       p.RowChange("tasks", "s", {"title": ("c", 2, A)})], group_end=7)  # fmt: skip
    now = dt.datetime.now(dt.timezone.utc)
    kept, _ = compaction.compact_entries(
        [(shapes.LogEntry(5, tx), now), (shapes.LogEntry(6, newer), now)], cutoff=now - dt.timedelta(days=1)
    )
    assert [entry.tx.group_end for entry in kept] == [7]  # entry 5 lost its only cell; 6 stays in its group


# --- pieces of one entry (no database) ----------------------------------------------------------


def record(row_id: str) -> p.ConflictRecord:
    return p.ConflictRecord("c-" + row_id, "tasks", row_id, "title", "w", 2, A, "l", 1, A, False)


def test_pieces_stay_under_max_bytes_with_each_rows_records_and_keys():
    changes = [p.RowChange("tasks", f"r{i}", {"title": ("x" * 50, 1, A)}) for i in range(20)]
    records = [record("r3"), record("r17"), record("gone")]  # "gone": its write lost, no change of it
    keys = [shapes.RowKeys("tasks", f"r{i}", {}) for i in range(20)]
    found = log_entries.pieces(changes, records, keys, max_bytes=600)
    assert len(found) > 1 and all(len(piece.body) <= 600 for piece in found)
    decoded = [_decode(piece.body) for piece in found]
    assert [c.id for tx in decoded for c in tx.changes] == [c.id for c in changes]
    for piece, tx in zip(found, decoded):
        ids = {c.id for c in tx.changes}
        assert {k.id for k in piece.keys} == ids
        assert all(c.row_id in ids or c.row_id == "gone" for c in piece.conflicts) and piece.conflicts == tx.conflicts
    assert sorted(c.id for piece in found for c in piece.conflicts) == sorted(c.id for c in records)
    assert log_entries.pieces(changes[:1], [], keys[:1], max_bytes=10)[0].body == log_entries.body(changes[:1], [])


@pytest.mark.parametrize("seq, end", [(1, 0), (127, 128), (300, 70_000), (2**40, 2**40 + 3), (2**62, 0)])
def test_a_position_written_into_a_body_is_what_encoding_gives(seq, end):
    changes = [p.RowChange("tasks", "r", {"title": ("x", 1, A)})]
    body = log_entries.body(changes, [record("r")])
    expected = msgspec.msgpack.encode(p.ServerTx(seq=seq, changes=changes, conflicts=[record("r")], group_end=end))
    assert log_entries.with_position(body, seq, end) == expected
