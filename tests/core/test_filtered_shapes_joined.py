"""Filtered shapes bootstrapped by snapshot, client and server sessions joined in memory.

Built on ``test_snapshots_joined`` (its Link, ShapeProgress and replica),
here with shapes that filter ``tasks`` on indexed columns (``repository``,
``status``; every shape passes ``shapes.check_shape``): each replica follows
one or two shapes, whole-table or filtered, different replicas different ones.

- The server (``FilteredServer``) keeps, beside each log entry, the routing
  keys the real server builds (``merge_plan.routing_keys``): per row the
  entry touches, its indexed values after the entry, the old values of the
  indexed columns it moved, and the row whole when it moved any. Log reads
  hand the ServerSession ``shapes.LogEntry`` objects, so the session's own
  selection (``shapes.select``) decides what each stream receives: a row
  moving into a shape arrives whole, one moving out gets the move itself.
  Snapshots read a shape's rows the way ``store.read_snapshot`` does: keyset
  chunks by id of the rows matching the filter (tombstones too, whole), the
  conflict records of the matching rows in the chunk's range.
- The replica persists what ``SyncState`` does per shape (keyed by
  ``shapes.shape_key``): state, position, resume key.
- The schedule interleaves single steps on every link, inserts, updates that
  move rows into and out of shapes (the filtered columns change), deletes,
  inserts of a deleted id again, cuts, and a replica following one more
  shape (as a sync call with a longer list of shapes: it connects again, its
  other shapes live, the new one by snapshot); then everyone syncs cleanly.

- Reconciling (as ``SyncConnection`` does): after an Ack, the replica
  fetches the rows whose filtered columns its acked changes wrote; after
  each chunk of a filtered snapshot, the rows of its own inside the shape
  that the chunk left out in the id range it covers. The server reads
  fetched rows when the schedule says (a FetchRows waits like other reads).

Proved: whatever the interleaving, for every replica and every shape it
follows, the replica's visible rows that match the shape's filter are
exactly the server's visible rows that match it, cell for cell; every shape
is live; every change was merged exactly once. Rows outside every shape of
a replica may linger there (docs/shapes-bootstrap-compaction.md: a row moving
out "stays in the replica, no longer updated"), so they are not compared.

Two ways a replica once held a stale copy inside its shape, each shown by
a test, are mended by fetching rows:

- ``test_a_losing_move_into_a_shape_follows_the_winner_out_of_the_writers_shape``
  and ``test_a_move_into_a_shape_meeting_a_concurrent_move_out_leaves_the_writers_shape``:
  a replica writes a filtered column of a row, its copy then lies inside
  one of its shapes, but the server's row after the merge lies outside them
  all (the write lost, or another filtered column changed concurrently).
  The entry of the push is routed by the server's row before and after it,
  both outside, so only the fetch after the Ack brings the winning cells.
- ``test_a_row_pushed_before_the_snapshot_and_moved_out_since_leaves_the_shape``:
  a row a replica pushed before its filtered snapshot was read, moved out of
  the shape elsewhere since. The snapshot leaves it out and the stream starts
  after the move; the fetch of the rows the chunk left out brings the move.

Left out: conflict records (a replica receives those of rows in its shapes
at the time of the entry; a row moving in later comes whole without them),
compaction and re-snapshots, columnar chunks, duplicated or shuffled delivery.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from syncstore import schema
from syncstore.core import client_session as cs
from syncstore.core import merge
from syncstore.core import protocol as p
from syncstore.core import server_session as ss
from syncstore.core import shapes as sh
from syncstore.core.merge import DELETED, Cell

from .test_sessions_joined import FakeTime, ModelReplica
from .test_snapshots_joined import CHUNK_ROWS, Link, ShapeProgress, SnapshotReplica, SnapshotServer, is_deleted, row_id
from .test_snapshots_joined import World as BaseWorld

TABLE = "tasks"
COLUMNS = ("title", "status", "repository")
INDEXES = schema.TABLES[TABLE].indexes  # the columns routing keys record


def indexed_values(cells: dict[str, Cell]) -> dict[str, Any]:
    """As merge_plan.indexed_values: the row's indexed columns it holds."""
    return {column: cells[column].value for column in INDEXES if column in cells}


# --- the server: routing keys per log entry, filtered snapshots --------------------------------


class FilteredServer(SnapshotServer):
    """The snapshot server, which also records each log entry's routing keys
    (as merge_plan.routing_keys) and reads snapshots through a shape's filter."""

    def __init__(self, time: FakeTime):
        super().__init__(time)
        self.keys: dict[int, list[sh.RowKeys]] = {}

    def merge(self, site: bytes, tx: p.LocalTx) -> None:
        before: dict[tuple[str, str], dict[str, Any] | None] = {}
        for change in tx.changes:
            key = (change.table, change.id)
            if key not in before:
                before[key] = indexed_values(self.rows[key]) if key in self.rows else None
        super().merge(site, tx)
        entry = self.log[-1]
        self.keys[entry.seq] = self.routing_keys(entry, before)

    def _carry_out(self, session: ss.ServerSession, actions: list[ss.Action], out: Any) -> bool:
        open_ = True
        for action in actions:
            if isinstance(action, ss.FetchRows):
                self.reads.setdefault(session, []).append(action)  # read when the schedule says
            else:
                open_ = super()._carry_out(session, [action], out) and open_
        return open_

    def routing_keys(
        self, entry: p.ServerTx, before: dict[tuple[str, str], dict[str, Any] | None]
    ) -> list[sh.RowKeys]:
        out = []
        touched = [(c.table, c.id) for c in entry.changes] + [(c.table, c.row_id) for c in entry.conflicts]
        for key in dict.fromkeys(touched):
            cells = self.rows[key]
            after = indexed_values(cells)
            old = before.get(key)
            if old is None:
                out.append(sh.RowKeys(key[0], key[1], after, None, None))
                continue
            moved = {column: value for column, value in old.items() if after.get(column) != value}
            full = {name: tuple(cell) for name, cell in cells.items()} if moved else None
            out.append(sh.RowKeys(key[0], key[1], after, moved, full))  # type: ignore[arg-type]
        return out

    def read(self, session: ss.ServerSession, kind: type, out: Any) -> bool:
        reads = self.reads[session]
        action = next(action for action in reads if isinstance(action, kind))
        reads.remove(action)
        if isinstance(action, ss.FetchRows):
            session.rows_read(action.id, self.fetched_rows(action.table, action.ids))
        elif isinstance(action, ss.ReadSnapshot):
            chunk, exhausted = self.filtered_chunk(action.shape, action.after_id)
            session.snapshot_read(chunk, position=len(self.log) if action.position else None, exhausted=exhausted)
        else:
            entries = [sh.LogEntry(tx.seq, tx, self.keys[tx.seq]) for tx in self.log if tx.seq > action.after]
            session.log_read(entries, more=False)
        return self.serve(session, out)

    def fetched_rows(self, table: str, ids: list[str]) -> list[p.RowChange]:
        """As store.read_rows: the rows held, whole (tombstones too), by id."""
        held = sorted(i for i in ids if (table, i) in self.rows)
        return [p.RowChange(table, i, {n: tuple(c) for n, c in self.rows[(table, i)].items()}) for i in held]

    def filtered_chunk(self, shape: sh.ShapeFilter, after_id: str) -> tuple[ss.SnapshotRows, bool]:
        """Like store.read_snapshot with a filter: the next matching rows by id
        (tombstones too, whole), the conflict records of matching rows in range."""
        matching = {i for (t, i), cells in self.rows.items() if t == shape.table and shape.matches(indexed_values(cells))}
        ids = sorted(i for i in matching if i > after_id)
        taken = ids[:CHUNK_ROWS]
        exhausted = len(ids) <= CHUNK_ROWS
        last_id = taken[-1] if taken else ""

        def in_range(i: str) -> bool:
            return i in matching and i > after_id and (exhausted or i <= last_id)

        rows = [p.RowChange(shape.table, i, {n: tuple(c) for n, c in self.rows[(shape.table, i)].items()}) for i in taken]
        conflicts = [c for tx in self.log for c in tx.conflicts if c.table == shape.table and in_range(c.row_id)]
        return ss.SnapshotRows(rows, conflicts, last_id), exhausted  # type: ignore[arg-type]

    def visible_in_shape(self, shape: sh.ShapeFilter) -> dict[str, dict[str, Any]]:
        return {
            i: {n: c.value for n, c in cells.items() if n != DELETED}
            for (t, i), cells in self.rows.items()
            if t == shape.table and not is_deleted(cells) and shape.matches(indexed_values(cells))
        }


# --- the replica: its shapes, keyed as SyncState keys them -----------------------------------------


class FilteredReplica(SnapshotReplica):
    def __init__(self, site: bytes, time: FakeTime, shapes: list[p.Shape]):
        ModelReplica.__init__(self, site, time)
        checked = [sh.check_shape(shape) for shape in shapes]
        self.filters = {sh.shape_key(found): found for found in checked}
        self.shapes = {key: ShapeProgress() for key in self.filters}  # a fresh replica
        self.reconciled = 0  # local changes up to here had their rows fetched back (SyncState.reconciled_seq)

    def follow(self, shape: p.Shape) -> bool:
        """One more shape (as SyncState.subscriptions records a new one): False if followed already."""
        found = sh.check_shape(shape)
        key = sh.shape_key(found)
        if key in self.filters:
            return False
        self.filters[key] = found
        self.shapes[key] = ShapeProgress()
        return True

    def subscriptions(self) -> list[cs.Subscription]:
        """As SyncState.subscriptions: live shapes follow the log from the
        cursor; the others take a snapshot, resumed where it was cut off."""
        live = [self.filters[key].to_shape() for key, shape in self.shapes.items() if shape.state == "live"]
        out = [cs.Subscription("live", live)] if live else []
        for key, shape in self.shapes.items():
            if shape.state == "snapshot":
                out.append(
                    cs.Subscription(
                        key, [self.filters[key].to_shape()], snapshot=True, resume=shape.resume,
                        cursor=shape.position if shape.resume else 0,
                    )
                )  # fmt: skip
        return out

    def visible_in_shape(self, shape: sh.ShapeFilter) -> dict[str, dict[str, Any]]:
        return {i: values for (t, i), values in self.visible().items() if t == shape.table and shape.matches(values)}


# --- a connection that reconciles filtered shapes, as SyncConnection does ----------------------------


class FilteredLink(Link):
    """A Link whose replica fetches rows the way ``SyncConnection`` does
    (``_reconcile_acked``, ``_reconcile_chunk``) and merges what comes back."""

    replica: FilteredReplica

    def __init__(self, replica: FilteredReplica, server: FilteredServer, links: list[Link]):
        self.chunk_after: dict[str, str] = {}  # per snapshot: where its last chunk on this link ended
        self.fetch_upto = 0  # this link asked for the rows of the replica's changes up to here
        super().__init__(replica, server, links)  # type: ignore[arg-type]

    def _persist(self, event: cs.Event) -> None:
        if isinstance(event, cs.RowsFetched):
            self.replica.apply(p.ServerTx(seq=0, changes=event.rows))  # merged; the cursor stays
            if not self.client.fetching:  # every fetch answered: those changes are reconciled
                self.replica.reconciled = max(self.replica.reconciled, self.fetch_upto)
            return
        super()._persist(event)
        if isinstance(event, cs.Acked):
            self.reconcile_acked(event.upto_seq)
        elif isinstance(event, cs.Welcomed):
            self.reconcile_acked(event.acked_seq)
        elif isinstance(event, cs.SnapshotChunk):
            self.reconcile_chunk(event)

    def reconcile_acked(self, upto: int) -> None:
        """Fetch the rows whose filtered columns the acked changes wrote, from
        the reconciled sequence on (a fetch cut off with its link is asked again)."""
        start = max(self.replica.reconciled, self.fetch_upto)
        if upto <= start:
            return
        self.fetch_upto = upto
        columns = {column for found in self.replica.filters.values() for column, _ in found.where}
        ids = [e.id for e in self.replica.log if start < e.seq <= upto and columns & set(e.values)]
        if ids:
            self.client.fetch(TABLE, ids)
        if not self.client.fetching:
            self.replica.reconciled = upto

    def reconcile_chunk(self, chunk: cs.SnapshotChunk) -> None:
        """Fetch the rows held inside a filtered shape that the chunk left out of its id range."""
        shape = self.replica.filters[chunk.id]
        if shape.whole:
            return
        ids = [row.id for row in chunk.rows]
        if not ids and not chunk.last:
            return
        after = self.chunk_after.get(chunk.id, "")
        upto = None if chunk.last else max(ids)
        self.chunk_after[chunk.id] = upto or ""
        held = self.replica.visible_in_shape(shape)
        missing = [i for i in sorted(held) if i > after and (upto is None or i <= upto) and i not in ids]
        if missing:
            self.client.fetch(TABLE, missing)

    def read_rows(self) -> None:
        self.open = self.server.read(self.session, ss.FetchRows, self.to_client) and self.open

    def steps_possible(self) -> list[Any]:
        out = super().steps_possible()
        if self.server.waiting(self.session, ss.FetchRows):
            out.append(self.read_rows)
        return out


# --- the world and its schedule ---------------------------------------------------------------------


class World(BaseWorld):
    """A server and replicas following their shapes, each always connected
    (a cut reconnects at once). Schedule steps name rows of ``tasks`` by id."""

    link_class = FilteredLink

    def __init__(self, shapes: list[list[p.Shape]]):
        time = FakeTime()
        self.start(FilteredServer(time), [FilteredReplica(bytes([i + 1]) * 16, time, s) for i, s in enumerate(shapes)])

    def local(self, step: tuple[Any, ...]) -> None:
        kind, who = step[0], step[1] % len(self.replicas)
        if kind == "insert":
            self.insert(who, (TABLE, step[2]), step[3])
        elif kind == "update":
            super().local((kind, who, [((TABLE, i), values) for i, values in step[2]]))
        elif kind == "delete":
            super().local((kind, who, (TABLE, step[2])))
        elif kind == "follow" and self.replicas[who].follow(step[2]):  # type: ignore[attr-defined]
            self.reconnect(who)


def assert_shapes_converged(world: World) -> None:
    server = world.server
    for replica in world.replicas:
        assert all(progress.state == "live" for progress in replica.shapes.values())
        for key, shape in replica.filters.items():
            mine, theirs = replica.visible_in_shape(shape), server.visible_in_shape(shape)
            assert mine == theirs, (replica.site[0], key)
        assert replica.acked == len(replica.log)
    merged = server.merged_changes
    assert len(merged) == len(set(merged)) == sum(len(r.log) for r in world.replicas)  # each change exactly once


# --- strategies ------------------------------------------------------------------------------------

WHOLE = p.Shape(TABLE)
REPO_1 = p.Shape(TABLE, where={"repository": ["r1"]})
REPO_1_2 = p.Shape(TABLE, where={"repository": ["r1", "r2"]})
COMPLETED = p.Shape(TABLE, where={"status": ["completed"]})
REPO_2_OPEN = p.Shape(TABLE, where={"repository": ["r2"], "status": ["pending", None]})
SHAPES = [WHOLE, REPO_1, REPO_1_2, COMPLETED, REPO_2_OPEN]

IDS = [row_id(i) for i in range(1, 5)]
R1 = IDS[0]
CELL_VALUES = {
    "title": st.sampled_from(["a", "b"]),
    "status": st.sampled_from(["pending", "completed", None]),
    "repository": st.sampled_from(["r1", "r2", "r3", None]),
}
WHOLE_ROW = st.fixed_dictionaries(CELL_VALUES)  # an insert writes every column
SOME_CELLS = st.sampled_from(COLUMNS).flatmap(
    lambda first: st.fixed_dictionaries(
        {first: CELL_VALUES[first]}, optional={c: v for c, v in CELL_VALUES.items() if c != first}
    )
)
WHO = st.integers(0, 3)
REPLICA_SHAPES = st.lists(
    st.lists(st.sampled_from(SHAPES), min_size=1, max_size=2, unique_by=lambda s: sh.shape_key(sh.check_shape(s))),
    min_size=2,
    max_size=3,
)


def deliver() -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(st.just("deliver"), st.integers(0, 7), st.sampled_from([False, False, True]))


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), WHO, st.sampled_from(IDS), WHOLE_ROW),
        st.tuples(st.just("update"), WHO, st.lists(st.tuples(st.sampled_from(IDS), SOME_CELLS), min_size=1, max_size=2)),
        st.tuples(st.just("update"), WHO, st.lists(st.tuples(st.sampled_from(IDS), SOME_CELLS), min_size=1, max_size=2)),
        st.tuples(st.just("delete"), WHO, st.sampled_from(IDS)),
        st.tuples(st.just("cut"), WHO),
        st.tuples(st.just("tick")),
        st.tuples(st.just("follow"), WHO, st.sampled_from(SHAPES)),
        *[deliver() for _ in range(12)],
    ),
    min_size=30,
    max_size=120,
)


# Replica 1 follows repository r2 (pending or no status) and repository r1.
# Replica 0 inserts task R1 at r1 (entry 1). Replica 1's first shape is read
# at position 1 (R1 is not in it) and goes live; its connection ends before
# the second shape's snapshot is read. Replica 0 moves R1 to r2 (entry 2).
# Replica 1 connects again: the stream of its live shape starts at 1, and the
# second shape's snapshot, read at 2, leaves R1 out. Entry 2 moves R1 out of
# r1 and into r2: it reached replica 1 as the moved cell alone, as if R1 being
# in the r1 shape before meant replica 1 held it whole (found by this property).
@example(
    shapes=[[WHOLE], [REPO_2_OPEN, REPO_1]],
    schedule=[
        ("insert", 0, R1, {"title": "a", "status": "pending", "repository": "r1"}),
        *[("deliver", 0, False)] * 4, *[("deliver", 2, False)] * 5, ("deliver", 3, False),
        ("update", 0, [(R1, {"repository": "r2"})]),
    ],
)  # fmt: skip
# Replica 1 follows two filtered shapes and inserts task R1 at r2 before its
# snapshot; its push merges, replica 0 moves R1 to r1, and replica 1's
# snapshots (read during the final sync) leave R1 out: replica 1 kept R1 at
# r2, inside its shape, until it fetched the rows a chunk left out (found by
# this property).
@example(
    shapes=[[WHOLE], [COMPLETED, REPO_2_OPEN], [WHOLE]],
    schedule=[
        ("tick",), *[("deliver", 0, False)] * 4, *[("update", 0, [(R1, {"title": "a"})])] * 3,
        *[("deliver", 0, False)] * 2,
        ("insert", 1, R1, {"title": "a", "status": "pending", "repository": "r2"}),
        ("cut", 1), ("tick",), ("cut", 1), *[("deliver", 0, False)] * 8,
        ("update", 0, [(R1, {"repository": "r1"})]),
    ],
)  # fmt: skip
# Replica 0 follows repository r1 and status completed; replica 1 deletes R1
# and inserts it again (pending); replica 0, which had not seen either, sets
# its status to completed, which loses on the server (a tie on the clock,
# broken by site). Its connection is cut right after the Ack, before the
# fetch of R1 is answered: the next connection must ask again (found by this
# property with 1,000 examples).
@example(
    shapes=[[REPO_1, COMPLETED], [WHOLE]],
    schedule=[
        ("insert", 0, R1, {"title": "a", "status": "pending", "repository": "r2"}),
        *[("deliver", 0, False)] * 19, ("deliver", 1, False), ("delete", 1, R1),
        ("insert", 3, R1, {"title": "a", "status": "pending", "repository": "r2"}),
        *[("deliver", 0, False)] * 4,
        ("update", 0, [(R1, {"title": "a"}), (R1, {"title": "a", "status": "completed"})]),
        ("update", 0, [(R1, {"title": "a"})]), ("deliver", 0, False), ("deliver", 2, False),
    ],
)  # fmt: skip
# About 15 ms an example: more than the CI profile's 30, never fewer than the profile asks.
@settings(max_examples=max(200, settings().max_examples))
@given(REPLICA_SHAPES, STEPS)
def test_any_interleaving_of_filtered_shapes_converges_inside_each_shape(shapes, schedule):
    world = World(shapes)
    for step in schedule:
        world.run(step)
    world.settle_everyone()
    assert_shapes_converged(world)


def test_a_losing_move_into_a_shape_follows_the_winner_out_of_the_writers_shape():
    """A follows repository r1 and holds task R, which moved out to r2 (A got
    the move). Offline, A moves R back to r1; meanwhile C, with a newer
    clock, moves R on to r3. A's push loses on the server (R stays at r3),
    and nothing of R is routed to A: the winning r3 cell went out when R was
    outside A's shape, and the entry of A's push (a conflict record only)
    is routed by R's indexed values after it, still r3. The fetch after the
    Ack brings the server's row: A's copy follows it to r3, out of A's shape."""
    world = World([[REPO_1], [WHOLE], [WHOLE]])
    a, b, c = range(3)
    world.write(b, [((TABLE, R1), {"title": "t", "status": "pending", "repository": "r1"})])
    for who in (b, a, c):
        world.sync(who)
    world.time.ms += 1
    world.write(b, [((TABLE, R1), {"repository": "r2"})])  # R moves out of A's shape
    world.sync(b)
    world.sync(a)  # A gets the move: R lingers at r2
    world.time.ms += 1
    world.write(a, [((TABLE, R1), {"repository": "r1"})])  # A moves R back, not pushed yet
    world.time.ms += 1
    world.write(c, [((TABLE, R1), {"repository": "r3"})])  # newer: C wins
    world.sync(c)
    world.settle_everyone()
    assert world.server.visible_in_shape(sh.check_shape(WHOLE))[R1]["repository"] == "r3"
    assert world.replicas[a].visible_in_shape(sh.check_shape(REPO_1)) == world.server.visible_in_shape(
        sh.check_shape(REPO_1)
    )
    assert world.replicas[a].visible()[(TABLE, R1)]["repository"] == "r3"  # lingering, but current


def test_a_row_pushed_before_the_snapshot_and_moved_out_since_leaves_the_shape():
    """Fresh replica A follows repository r1 and inserts task R at r1 before
    its first sync. A's push merges (entry 1) while its snapshot waits; B
    moves R to r2 (entry 2); then A's snapshot is read at position 2: R does
    not match, so it is left out, and the stream starts at 2. A fetches the
    rows of its own the chunk left out: R follows the move to r2."""
    world = World([[REPO_1], [WHOLE]])
    a, b = range(2)
    world.write(a, [((TABLE, R1), {"title": "t", "status": "pending", "repository": "r1"})])
    link = world.connected[a]
    link.deliver_to_server()  # Hello
    link.deliver_to_client()  # Welcome: A subscribes (snapshot) and pushes
    while link.to_server:
        link.deliver_to_server()  # the Subscribe (its read waits) and the Push (merged: entry 1)
    assert len(world.server.log) == 1 and world.server.waiting(link.session, ss.ReadSnapshot)
    world.sync(b)
    world.time.ms += 1
    world.write(b, [((TABLE, R1), {"repository": "r2"})])
    world.sync(b)  # entry 2: R moves out of A's shape
    link.run_clean()  # A's snapshot, read at position 2, leaves R out
    world.settle_everyone()
    assert world.replicas[a].visible_in_shape(sh.check_shape(REPO_1)) == world.server.visible_in_shape(
        sh.check_shape(REPO_1)
    )
    assert world.replicas[a].visible()[(TABLE, R1)]["repository"] == "r2"


def test_a_move_into_a_shape_meeting_a_concurrent_move_out_leaves_the_writers_shape():
    """B follows repository r2 with status pending; task R is at r1, pending
    (outside B's shape; B inserted it). Offline, B moves R to r2 (inside, in
    B's copy); meanwhile A sets R's status to completed (R at r1: routed to
    nobody following r2). B's push merges: R is (r2, completed) on the server,
    outside B's shape before and after, so nothing is routed to B; the fetch
    after the Ack brings R as the server holds it, outside B's shape."""
    world = World([[WHOLE], [REPO_2_OPEN]])
    a, b = range(2)
    world.write(b, [((TABLE, R1), {"title": "t", "status": "pending", "repository": "r1"})])
    world.sync(b)
    world.sync(a)
    world.time.ms += 1
    world.write(b, [((TABLE, R1), {"repository": "r2"})])  # not pushed yet
    world.time.ms += 1
    world.write(a, [((TABLE, R1), {"status": "completed"})])
    world.sync(a)
    world.settle_everyone()
    on_server = world.server.visible_in_shape(sh.check_shape(WHOLE))[R1]
    assert on_server == {"title": "t", "status": "completed", "repository": "r2"}
    assert world.replicas[b].visible_in_shape(sh.check_shape(REPO_2_OPEN)) == world.server.visible_in_shape(
        sh.check_shape(REPO_2_OPEN)
    )
    assert world.replicas[b].visible()[(TABLE, R1)] == on_server


def test_a_row_leaving_a_shape_before_its_snapshot_comes_whole_and_outside_the_others():
    """Fresh replica A follows repository r2 with status pending (or none),
    and repository r1. Task R is at r1, completed (entry 1). A's first
    snapshot is read at position 1 (R is not in it); B moves R to r2
    (entry 2); A's second snapshot, read at 2, leaves R out; the stream
    starts at 1. Entry 2 moves R out of A's r1 shape, and A never held R: the
    moved cell alone would make A's copy a task at r2 with no status, inside
    A's first shape, while the server's R (completed) lies outside it. A row
    whose membership in any of a stream's shapes changes is sent whole."""
    world = World([[REPO_2_OPEN, REPO_1], [WHOLE]])
    a, b = range(2)
    world.write(b, [((TABLE, R1), {"title": "t", "status": "completed", "repository": "r1"})])
    world.sync(b)  # entry 1
    link = world.connected[a]
    link.deliver_to_server()  # Hello
    link.deliver_to_client()  # Welcome: A subscribes to both shapes
    while link.to_server:
        link.deliver_to_server()
    link.read_snapshot()  # the first shape, at position 1: R is not in it
    assert world.server.waiting(link.session, ss.ReadSnapshot)  # the second waits
    world.time.ms += 1
    world.write(b, [((TABLE, R1), {"repository": "r2"})])
    world.sync(b)  # entry 2: R leaves r1 for r2, completed
    link.run_clean()  # the second snapshot, read at 2, leaves R out; the stream starts at 1
    world.settle_everyone()
    assert world.server.visible_in_shape(sh.check_shape(REPO_2_OPEN)) == {}
    assert world.replicas[a].visible_in_shape(sh.check_shape(REPO_2_OPEN)) == {}
    assert world.replicas[a].visible()[(TABLE, R1)] == {"title": "t", "status": "completed", "repository": "r2"}
