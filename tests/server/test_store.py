"""The PostgreSQL change store: merges, at most once, atomic transactions, refusals, values."""

from __future__ import annotations

import asyncio

import msgspec
import numpy as np
import psycopg

from syncstore.core import protocol as p
from syncstore.core.merge import DELETED, Cell

from syncstore_server.store import open_store

from .conftest import drop_database, migrate_url, new_database
from .helpers import insert, new_id, site, stamp, tenant_log, tenant_rows, update, whole_insert

A, B = site(1), site(2)


def run(coro):
    return asyncio.run(coro)


def merge(url, tenant, who, txs, **options):
    async def main():
        async with open_store(url, **options) as store:
            return await store.merge(tenant, who, txs)

    return run(main())


def cells(url, tenant, row_id, table="tasks"):
    async def main():
        async with open_store(url) as store:
            return await store.cells(tenant, table, row_id)

    return run(main())


def read_log(url, tenant, after=0):
    async def main():
        async with open_store(url) as store:
            return await store.read_log(tenant, after)

    return run(main())


def test_merge_per_column_last_write_wins(migrated):
    row, h = new_id(), stamp()
    merge(migrated, "t", A, [p.LocalTx(1, [insert(1, row, h, title="first", status="pending")])])
    seen = {"title": (h, A), "status": (h, A)}
    merge(migrated, "t", A, [p.LocalTx(2, [update(2, row, h + 5, {"title": seen["title"]}, title="by a")])])
    merge(migrated, "t", B, [p.LocalTx(1, [update(1, row, h + 3, {"status": seen["status"]}, status="completed")])])
    merge(migrated, "t", B, [p.LocalTx(2, [update(2, row, h + 4, {"title": seen["title"]}, title="by b")])])
    got = cells(migrated, "t", row)
    assert got["title"] == Cell("by a", h + 5, A)  # newer than B's edit
    assert got["status"] == Cell("completed", h + 3, B)  # nobody else wrote status
    (stored,) = tenant_rows(migrated, "t")
    assert (stored["title"], stored["status"], stored["_deleted"]) == ("by a", "completed", False)


def test_conflict_records_have_every_field(migrated):
    row, h = new_id(), stamp()
    merge(migrated, "t", A, [p.LocalTx(1, [insert(1, row, h, title="first")])])
    merge(migrated, "t", A, [p.LocalTx(2, [update(2, row, h + 9, {"title": (h, A)}, title="a's")])])
    result = merge(migrated, "t", B, [p.LocalTx(5, [update(1, row, h + 2, {"title": (h, A)}, title="b's")])])
    assert result.conflicts == 1 and result.row_changes == 0
    with psycopg.connect(migrated) as conn:
        record = conn.execute(
            "SELECT tenant, tbl, row_id, col, winner_value, winner_hlc, winner_site, loser_value, loser_hlc, "
            "loser_site, incoming_won, seq, created_at, resolved_at FROM syncstore.conflicts"
        ).fetchone()
    tenant, tbl, row_id, col, wv, wh, ws, lv, lh, ls, incoming_won, seq, created, resolved = record
    assert (tenant, tbl, row_id, col) == ("t", "tasks", row, "title")
    assert (msgspec.msgpack.decode(wv), wh, bytes(ws)) == ("a's", h + 9, A)
    assert (msgspec.msgpack.decode(lv), lh, bytes(ls)) == ("b's", h + 2, B)
    assert incoming_won is False and created is not None and resolved is None
    # ...and it travels with the log entry of the merge that made it
    (entry_seq, tx), = [e for e in read_log(migrated, "t")[0] if e[1].conflicts]
    assert entry_seq == seq and tx.changes == []
    (sent,) = tx.conflicts
    assert (sent.winner_value, sent.loser_value, sent.incoming_won) == ("a's", "b's", False)


def test_a_retried_push_is_applied_at_most_once(migrated):
    row, h = new_id(), stamp()
    merge(migrated, "t", A, [p.LocalTx(1, [insert(1, row, h + 100, title="from a")])])
    # B's push loses to A's row and conflicts: merging it twice would record twice.
    push = [p.LocalTx(1, [insert(1, row, h, title="from b")]), p.LocalTx(2, [insert(2, new_id(), h)])]
    first = merge(migrated, "t", B, push)
    again = merge(migrated, "t", B, push)
    assert first.upto_seq == again.upto_seq == 2
    assert first.conflicts == 1 and again.conflicts == 0 and again.positions == []
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM syncstore.conflicts").fetchone()[0] == 1
    assert len(tenant_rows(migrated, "t")) == 2
    assert [origin for _, origin, _ in tenant_log(migrated, "t")].count(B) == 2


def test_changes_below_the_ack_are_skipped_within_a_transaction(migrated):
    r1, r2, h = new_id(), new_id(), stamp()
    merge(migrated, "t", A, [p.LocalTx(1, [insert(1, r1, h)])])
    result = merge(migrated, "t", A, [p.LocalTx(1, [insert(1, r1, h)]), p.LocalTx(2, [insert(2, r2, h + 1)])])
    assert result.upto_seq == 2 and result.row_changes == 1


def test_a_transaction_with_one_bad_change_applies_nothing_and_is_acked_past(migrated):
    good, h = new_id(), stamp()
    bad_tx = p.LocalTx(1, [insert(1, good, h, title="fine"), update(2, good, h + 1, {}, title=42)])
    next_tx = p.LocalTx(2, [insert(3, new_id(), h + 2, title="next")])
    result = merge(migrated, "t", A, [bad_tx, next_tx])
    assert result.upto_seq == 3
    (rejection,) = result.rejected
    assert (rejection.tx, rejection.code) == (1, "bad_value") and "expected text" in rejection.message
    assert [r["title"] for r in tenant_rows(migrated, "t")] == ["next"]
    with psycopg.connect(migrated) as conn:
        found = conn.execute(
            "SELECT tenant, site, tx, first_seq, last_seq, code, changes FROM syncstore.rejections"
        ).fetchone()
    tenant, who, tx, first, last, code, raw = found
    assert (tenant, bytes(who), tx, first, last, code) == ("t", A, 1, 1, 2, "bad_value")
    assert msgspec.msgpack.decode(raw, type=p.LocalTx) == bad_tx


def test_a_value_postgresql_refuses_is_isolated_to_its_transaction():
    # A database in LATIN1 cannot hold a euro sign: the schema checks pass it,
    # PostgreSQL refuses it, and only its transaction is refused.
    name, url = new_database(encoding="LATIN1")
    try:
        migrate_url(url)
        h = stamp()
        bad = p.LocalTx(1, [insert(1, new_id(), h, title="costs 5 \u20ac")])
        good = p.LocalTx(2, [insert(2, new_id(), h + 1, title="kept")])
        result = merge(url, "t", A, [bad, good])
        assert result.upto_seq == 2
        assert [(r.tx, r.code) for r in result.rejected] == [(1, "bad_value")]
        assert "LATIN1" in result.rejected[0].message
        assert [r["title"] for r in tenant_rows(url, "t")] == ["kept"]
        again = merge(url, "t", A, [bad, good])
        assert again.rejected == [] and again.upto_seq == 2  # refused once, for good
    finally:
        drop_database(name)


def test_every_type_comes_back_in_canonical_form(migrated):
    row, h = new_id(), stamp()
    vector = np.array([0.1, -2.5, 3.0], dtype=np.float32).tobytes()
    values = {
        "agent_id": "agent",
        "memory_type": "knowledge_base",
        "content": "héllo \u2028 wörld",
        "importance": 7,
        "tags": '["b","a"]',
        "context": '{"nested":{"k":[1,2.5,null,true]},"z":"\u00e9"}',
        "last_accessed_at": "2025-07-17T10:00:00.000001Z",
        "is_active": 0,
        "embedding": vector,
        "embedding_dimensions": 3,
        "metadata": "{}",
    }
    merge(migrated, "t", A, [p.LocalTx(1, [insert(1, row, h, table="agent_memory", **values)])])
    got = cells(migrated, "t", row, table="agent_memory")
    for name, value in values.items():
        assert got[name].value == value, name
        assert type(got[name].value) is type(value), name
    assert got["access_count"] == Cell(0, h, A)  # a default the insert left out: written with it
    (_, tx), = read_log(migrated, "t")[0]
    sent = tx.changes[0].cells
    assert {name: sent[name][0] for name in values} == values
    with psycopg.connect(migrated) as conn:
        kinds = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'syncstore' AND table_name = 'agent_memory'"
        ).fetchall())  # fmt: skip
    assert kinds["context"] == "jsonb" and kinds["last_accessed_at"] == "timestamp with time zone"
    assert kinds["is_active"] == "boolean" and kinds["importance"] == "bigint"


def test_a_delete_keeps_a_tombstone_row(migrated):
    row, h = new_id(), stamp()
    merge(migrated, "t", A, [p.LocalTx(1, [insert(1, row, h)])])
    merge(migrated, "t", A, [p.LocalTx(2, [p.LocalChange(2, "tasks", row, h + 1, {DELETED: 1}, {DELETED: (h, A)})])])
    merge(migrated, "t", B, [p.LocalTx(1, [update(1, row, h - 5, {"title": (0, b"")}, title="late")])])
    (stored,) = tenant_rows(migrated, "t")
    assert stored["_deleted"] is True
    assert cells(migrated, "t", row)[DELETED] == Cell(1, h + 1, A)


def test_tenants_never_touch_each_others_rows(migrated):
    row, h = new_id(), stamp()
    merge(migrated, "alpha", A, [p.LocalTx(1, [insert(1, row, h, title="alpha's")])])
    # Another tenant writes a row with the same id, newer, not having seen alpha's.
    result = merge(migrated, "beta", B, [p.LocalTx(1, [insert(1, row, h + 50, title="beta's")])])
    assert result.conflicts == 0  # no row of beta's existed: nothing competed
    assert [r["title"] for r in tenant_rows(migrated, "alpha")] == ["alpha's"]
    assert [r["title"] for r in tenant_rows(migrated, "beta")] == ["beta's"]
    assert [tx.changes[0].cells["title"][0] for _, tx in read_log(migrated, "alpha")[0]] == ["alpha's"]
    assert [tx.changes[0].cells["title"][0] for _, tx in read_log(migrated, "beta")[0]] == ["beta's"]


def test_the_log_reads_in_pages(migrated):
    h = stamp()
    merge(migrated, "t", A, [p.LocalTx(i, [insert(i, new_id(), h + i)]) for i in range(1, 6)])

    async def main():
        async with open_store(migrated) as store:
            first, more = await store.read_log("t", 0, limit=3)
            rest, done = await store.read_log("t", first[-1][0], limit=3)
            return first, more, rest, done

    first, more, rest, done = run(main())
    assert more and not done
    assert [s for s, _ in first + rest] == sorted(s for s, _ in first + rest) and len(first + rest) == 5


def test_concurrent_pushes_to_the_same_new_row_merge_as_if_in_turn(migrated):
    row, h = new_id(), stamp()

    async def main():
        async with open_store(migrated, pool_size=4) as store:
            return await asyncio.gather(
                *(store.merge("t", site(10 + k), [p.LocalTx(1, [insert(1, row, h + k, title=f"v{k}")])]) for k in range(4))
            )

    results = run(main())
    assert all(r.upto_seq == 1 for r in results)
    assert cells(migrated, "t", row)["title"] == Cell("v3", h + 3, site(13))
    assert len(tenant_rows(migrated, "t")) == 1


def test_writing_some_columns_keeps_the_clocks_and_values_of_the_others(migrated):
    row, h = new_id(), stamp()
    merge(migrated, "t", A, [p.LocalTx(1, [whole_insert(1, row, h, title="a", description="kept")])])
    merge(migrated, "t", B, [p.LocalTx(1, [update(1, row, h + 1, {"title": (h, A)}, title="b")])])
    merge(migrated, "t", A, [p.LocalTx(2, [update(2, row, h + 2, {"status": (h, A)}, status="completed")])])
    got = cells(migrated, "t", row)
    assert got["title"] == Cell("b", h + 1, B)  # not read by the last push, still intact
    assert got["status"] == Cell("completed", h + 2, A)
    assert got["description"] == Cell("kept", h, A)
    assert got["priority"] == Cell("medium", h, A)
    assert got["pull_request"] == Cell(None, h, A)
    assert got[DELETED] == Cell(0, h, A)


def test_a_push_mixing_whole_rows_and_some_columns_of_existing_rows(migrated):
    x, y, h = new_id(), new_id(), stamp()
    merge(migrated, "t", A, [p.LocalTx(1, [whole_insert(1, x, h, title="a"), whole_insert(2, y, h, title="y")])])
    push = [
        p.LocalTx(1, [update(1, x, h + 5, {"status": (h, A)}, status="in_progress")]),
        # x inserted again elsewhere, not having seen A's: every cell competes
        p.LocalTx(2, [whole_insert(2, x, h + 3, title="b", description="from b")]),
        p.LocalTx(3, [update(3, y, h + 4, {"title": (h, A)}, title="y2")]),
    ]
    result = merge(migrated, "t", B, push)
    # title "a"/"b", description ""/"from b", and status: tx 1 set it, the insert says "pending"
    assert result.upto_seq == 3 and result.conflicts == 3
    got = cells(migrated, "t", x)
    assert got["title"] == Cell("b", h + 3, B)
    assert got["status"] == Cell("in_progress", h + 5, B)  # newer than the insert's
    assert got["description"] == Cell("from b", h + 3, B)
    assert got["priority"] == Cell("medium", h + 3, B)
    other = cells(migrated, "t", y)
    assert other["title"] == Cell("y2", h + 4, B) and other["status"] == Cell("pending", h, A)
    (x_row, y_row) = sorted(tenant_rows(migrated, "t"), key=lambda r: r["id"] != x)
    assert (x_row["title"], x_row["status"], x_row["description"]) == ("b", "in_progress", "from b")
    assert (y_row["title"], y_row["status"]) == ("y2", "pending")
