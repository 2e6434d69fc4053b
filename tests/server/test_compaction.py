"""Log compaction: superseded versions dropped, old tombstones collected, never a row brought back.

Properties (hypothesis, no database): replaying the compacted log gives the
same cells as replaying the full log; a replica that applied the full log up
to any position and then the compacted log after it ends with the same cells;
after tombstones are collected, a replica at any position from the horizon on
shows the same rows. Then the same against PostgreSQL, the CLI command, the
daemon's periodic compaction, and MustResnapshot for a cursor before the horizon.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import psycopg
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from syncstore.cli.main import cli
from syncstore.core import merge
from syncstore.core import protocol as p
from syncstore.core import shapes as sh
from syncstore.core.merge import DELETED, Cell

from syncstore_server import compaction
from syncstore_server.store import open_store

from .conftest import ServerThread
from .helpers import hello, insert, new_id, recv, site, stamp, token, update

SITES = (b"a" * 16, b"b" * 16)
COLUMNS = ("title", "status")

# --- the pure properties ---------------------------------------------------------------


def replay(entries, rows=None):
    rows = {} if rows is None else {k: dict(v) for k, v in rows.items()}
    for entry in entries:
        for change in entry.tx.changes:
            current = rows.setdefault(change.id, {})
            rows[change.id], _ = merge.merge_row(current, {k: Cell(*v) for k, v in change.cells.items()})
    return rows


def visible(rows):
    return {
        row_id: {k: c.value for k, c in cells.items() if k != DELETED}
        for row_id, cells in rows.items()
        if cells.get(DELETED, Cell(0, 0, b"")).value == 0
    }


op = st.tuples(
    st.sampled_from(["insert", "update", "delete"]),
    st.integers(0, 3),  # row
    st.integers(1, 60),  # clock (concurrent writers: not in order)
    st.sampled_from(SITES),
    st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=2, unique=True),
    st.integers(0, 3),  # value
)


def server_log(ops_per_tx):
    """The log a server writes for these transactions: per entry, the cells the merge changed."""
    state: dict[str, dict[str, Cell]] = {}
    entries = []
    unique = 0
    for seq, ops in enumerate(ops_per_tx, start=1):
        changes: dict[str, dict] = {}
        for kind, row, clock, who, columns, value in ops:
            unique += 1
            clock = clock * 1000 + unique  # a stamp is never reused
            row_id = f"r{row}"
            if kind == "insert":
                incoming = {c: Cell(f"{c}{value}", clock, who) for c in COLUMNS} | {DELETED: Cell(0, clock, who)}
            elif kind == "update":
                if row_id not in state:
                    continue  # only inserts create rows
                incoming = {c: Cell(f"{c}{value}", clock, who) for c in columns}
            else:
                if row_id not in state:
                    continue
                incoming = {DELETED: Cell(1, clock, who)}
            merged, changed = merge.merge_row(state.get(row_id, {}), incoming)
            state[row_id] = merged
            for c in changed:
                changes.setdefault(row_id, {})[c] = tuple(merged[c])  # one change per row and entry
        if changes:
            rows = [p.RowChange("tasks", row_id, cells) for row_id, cells in changes.items()]
            entries.append(sh.LogEntry(seq, p.ServerTx(seq, rows)))
    return entries, state


@given(st.lists(st.lists(op, min_size=1, max_size=3), min_size=1, max_size=25), st.data())
def test_the_compacted_log_replays_to_the_same_cells_from_any_position(txs, data):
    entries, state = server_log(txs)
    full = replay(entries)
    assert full == state
    # No tombstone old enough: only superseded versions go.
    kept, _ = compaction.compact_entries([(e, e.seq) for e in entries], cutoff=0)
    assert replay(kept) == full
    assert sum(len(c.cells) for e in kept for c in e.tx.changes) <= sum(len(c.cells) for e in entries for c in e.tx.changes)
    position = data.draw(st.integers(0, entries[-1].seq if entries else 0))
    at_position = replay([e for e in entries if e.seq <= position])
    assert replay([e for e in kept if e.seq > position], at_position) == full


@given(st.lists(st.lists(op, min_size=1, max_size=3), min_size=1, max_size=25), st.integers(0, 26), st.data())
def test_after_collecting_tombstones_every_position_from_the_horizon_converges(txs, cutoff, data):
    entries, state = server_log(txs)
    walk = compaction.LogCompaction(cutoff=cutoff)
    kept = [found for e in sorted(entries, key=lambda e: -e.seq) if (found := walk.visit(e, e.seq)) is not None][::-1]
    collected = set(walk.tombstones)
    for key in collected:
        assert state[key[1]][DELETED].value == 1  # only rows deleted (and still deleted) are collected
    oldest = max(walk.tombstones.values(), default=0)
    retained = [s for e in kept if e.seq > oldest and (s := compaction.strip_rows(e, collected)) is not None]
    server = {k: v for k, v in state.items() if ("tasks", k) not in collected}
    assert visible(server) == visible(state)  # collecting a tombstone hides nothing
    position = data.draw(st.integers(oldest, max(oldest, entries[-1].seq if entries else 0)))
    at_position = replay([e for e in entries if e.seq <= position])
    assert visible(replay([e for e in retained if e.seq > position], at_position)) == visible(state)
    # A fresh replica: the snapshot (the server's live rows) and then the log from the head.
    snapshot = {k: v for k, v in server.items() if v[DELETED].value == 0}
    assert visible(replay([], snapshot)) == visible(state)


# --- against PostgreSQL ----------------------------------------------------------------------


def run(coro):
    return asyncio.run(coro)


def test_compaction_in_postgresql_keeps_the_state_and_never_brings_a_row_back(migrated):
    tenant = f"c-{uuid.uuid4().hex[:8]}"
    keep, gone, h = new_id(), new_id(), stamp()

    async def main():
        async with open_store(migrated) as store:
            await store.merge(tenant, site(1), [p.LocalTx(1, [insert(1, keep, h, title="v0"), insert(2, gone, h + 1)])])
            seen = (h, site(1))
            for k in range(1, 21):
                await store.merge(tenant, site(1), [p.LocalTx(1 + k, [update(2 + k, keep, h + 1 + k, {"title": seen}, title=f"v{k}")])])
                seen = (h + 1 + k, site(1))
            before, _, _ = await store.read_entries(tenant, 0, limit=1000)
            middle = before[10].seq
            # Keep everything for a week: only superseded versions go.
            (week,) = await compaction.compact(store, tenant=tenant, retention_s=7 * 86400)
            after, _, oldest = await store.read_entries(tenant, 0, limit=1000)
            await store.merge(tenant, site(1), [p.LocalTx(30, [p.LocalChange(30, "tasks", gone, h + 50, {DELETED: 1}, None)])])
            head = (await store.read_entries(tenant, 0, limit=1000))[0][-1].seq
            # Collect now: the deleted row goes, and the log up to its delete.
            (now,) = await compaction.compact(store, tenant=tenant, retention_s=0)
            final, _, horizon = await store.read_entries(tenant, 0, limit=1000)
            # A late update of the collected row, made before the delete was seen, and a delete again.
            late = await store.merge(
                tenant, site(2), [p.LocalTx(1, [update(1, gone, h + 60, {"title": (h + 1, site(1))}, title="late")])]
            )
            return before, middle, week, after, oldest, head, now, final, horizon, late

    before, middle, week, after, oldest, head, now, final, horizon, late = run(main())
    assert (week.entries_deleted, week.entries_rewritten, week.cells_dropped, oldest) == (19, 1, 20, 0)
    assert replay(after) == replay(before)
    assert replay([e for e in after if e.seq > middle], replay([e for e in before if e.seq <= middle])) == replay(before)
    assert now.rows_collected == 1 and horizon == head == now.oldest
    assert final == []  # everything up to the delete went
    assert late.positions == [] and late.row_changes == 0
    with psycopg.connect(migrated) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM syncstore.tasks WHERE tenant = %s", (tenant,))]
        assert ids == [keep]  # the late update made nothing
        assert conn.execute("SELECT title FROM syncstore.tasks WHERE id = %s", (keep,)).fetchone()[0] == "v20"


def test_a_cursor_before_the_horizon_must_resnapshot_and_a_snapshot_serves_it(shared_database):
    tenant = f"c-{uuid.uuid4().hex[:8]}"
    row, h = new_id(), stamp()

    async def setup():
        async with open_store(shared_database) as store:
            await store.merge(tenant, site(1), [p.LocalTx(1, [insert(1, row, h), insert(2, new_id(), h + 1)])])
            await store.merge(tenant, site(1), [p.LocalTx(2, [p.LocalChange(3, "tasks", row, h + 2, {DELETED: 1}, None)])])
            (result,) = await compaction.compact(store, tenant=tenant, retention_s=0)
            return result.oldest

    oldest = run(setup())
    server = ServerThread(shared_database).start()
    try:

        async def main():
            async with connect(server.ws_url, max_size=None) as ws:
                await hello(ws, token(tenant), site(5), cursor=1)
                await ws.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")], cursor=1)))
                must = await recv(ws)
                await ws.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")], snapshot=True, id="again")))
                snapshot = await recv(ws)
                up = await recv(ws)
                return must, snapshot, up

        must, snapshot, up = run(main())
    finally:
        server.stop()
    assert must == p.MustResnapshot(oldest=oldest)
    assert len(snapshot.rows) == 1 and snapshot.last and snapshot.position >= oldest
    assert up == p.UpToDate(cursor=snapshot.position)


def test_the_operator_command_and_the_daemons_periodic_compaction(shared_database):
    tenant, other = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    h = stamp()

    async def write(t):
        async with open_store(shared_database) as store:
            row = new_id()
            await store.merge(t, site(1), [p.LocalTx(1, [insert(1, row, h)])])
            await store.merge(t, site(1), [p.LocalTx(2, [p.LocalChange(2, "tasks", row, h + 1, {DELETED: 1}, None)])])

    run(write(tenant))
    result = CliRunner().invoke(
        cli, ["server", "compact", "--database-url", shared_database, "--retention", "0", "--tenant", tenant, "--json"]
    )
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.output)
    assert found["tenant"] == tenant and found["rows_collected"] == 1
    bad = CliRunner().invoke(cli, ["server", "compact", "--database-url", shared_database, "--retention", "soon"])
    assert bad.exit_code != 0 and "duration" in bad.output

    run(write(other))
    server = ServerThread(shared_database, compact_interval_s=0.1, retention_s=0).start()
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=20)
        while dt.datetime.now() < deadline:
            with psycopg.connect(shared_database) as conn:
                left = conn.execute("SELECT count(*) FROM syncstore.tasks WHERE tenant = %s", (other,)).fetchone()[0]
            if left == 0:
                break
            asyncio.run(asyncio.sleep(0.1))
    finally:
        server.stop()
    assert left == 0
