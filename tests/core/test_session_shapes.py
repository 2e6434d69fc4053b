"""Shapes, snapshots and live streams in the protocol sessions alone (no I/O)."""

from __future__ import annotations

import pytest

from syncstore.core import client_session as cs
from syncstore.core import protocol as p
from syncstore.core import server_session as ss
from syncstore.core import shapes as sh
from syncstore.errors import ProtocolError

SITE = b"s" * 16
TABLES = ("tasks", "task_messages")
WEB = p.Shape("tasks", where={"repository": ["acme/web"]})


def ready() -> ss.ServerSession:
    session = ss.ServerSession(tables=TABLES)
    session.receive(p.Hello(token="t", site=SITE))
    session.actions()
    session.accept(ss.Identity("acme", frozenset({"sync"}), None), acked_seq=0)
    session.actions()
    return session


def sent(actions) -> list[p.Message]:
    return [a.message for a in actions if isinstance(a, ss.Send)]


def row(row_id: str, **cells) -> p.RowChange:
    return p.RowChange("tasks", row_id, {k: (v, 1, SITE) for k, v in cells.items()})


def test_a_fresh_snapshot_then_the_log_from_its_position_then_live():
    s = ready()
    s.receive(p.Subscribe(shapes=[WEB, p.Shape("task_messages")], snapshot=True, id="a"))
    (read,) = s.actions()
    assert read == ss.ReadSnapshot(sh.check_shape(WEB), "", True)
    s.snapshot_read([row("r1", title="x"), row("r2", title="y")], position=40, exhausted=False)
    chunk, again = s.actions()
    assert chunk.message == p.Snapshot(rows=[row("r1", title="x"), row("r2", title="y")], position=40, resume="0:r2", id="a")
    assert again == ss.ReadSnapshot(sh.check_shape(WEB), "r2", False)
    s.snapshot_read([], position=None, exhausted=True)  # the first shape has no more: nothing to send for it
    (next_shape,) = s.actions()
    assert next_shape == ss.ReadSnapshot(sh.check_shape(p.Shape("task_messages")), "", False)
    s.snapshot_read([], position=None, exhausted=True)
    last, log = s.actions()
    assert last.message == p.Snapshot(rows=[], position=40, last=True, id="a")
    assert log == ss.ReadLog(40)  # the stream starts at the snapshot's position
    s.log_read([], more=False, head=42)
    up, live = s.actions()
    assert up.message == p.UpToDate(cursor=42) and live == ss.Live(s.shapes, 42)
    s.deliver([(42, p.ServerTx(42, [])), (43, p.ServerTx(43, [row("r3")]))])
    assert sent(s.actions()) == [p.Changes(txs=[p.ServerTx(43, [row("r3")])]), p.UpToDate(cursor=43)]
    s.notify()  # live: the router delivers, notify reads nothing
    assert s.actions() == []


def test_a_resumed_snapshot_keeps_its_position_and_the_stream_starts_there():
    s = ready()
    s.receive(p.Subscribe(shapes=[WEB], snapshot=True, resume="0:r2", cursor=40, id="a"))
    assert s.actions() == [ss.ReadSnapshot(sh.check_shape(WEB), "r2", False)]
    s.snapshot_read([row("r3", title="z")], position=None, exhausted=True)
    last, log = s.actions()
    assert last.message.position == 40 and last.message.last and log == ss.ReadLog(40)


def test_a_subscribe_of_the_same_id_drops_the_chunk_being_read_and_starts_the_snapshot_again():
    """The client counts a subscription's snapshot from its latest Subscribe: a
    last chunk of the one it replaced would end the new one before it came."""
    s = ready()
    s.receive(p.Subscribe(shapes=[WEB], snapshot=True, id="a"))
    (read,) = s.actions()
    s.receive(p.Subscribe(shapes=[WEB], snapshot=True, id="a"))  # while that chunk is read
    assert s.actions() == []
    s.snapshot_read([row("r1", title="x")], position=40, exhausted=True)
    (again,) = s.actions()  # the old chunk is not sent; the new snapshot starts
    assert again == ss.ReadSnapshot(sh.check_shape(WEB), "", True)
    s.snapshot_read([row("r1", title="x")], position=41, exhausted=True)
    last, log = s.actions()
    assert last.message == p.Snapshot(rows=[row("r1", title="x")], position=41, last=True, id="a")
    assert log == ss.ReadLog(41)


def test_the_stream_waits_for_every_snapshot_and_starts_at_the_smallest_position():
    s = ready()
    s.receive(p.Subscribe(shapes=[p.Shape("tasks")], snapshot=True, id="a"))
    s.receive(p.Subscribe(shapes=[p.Shape("task_messages")], snapshot=True, resume="0:m", cursor=30, id="b"))
    s.actions()
    s.snapshot_read([], position=50, exhausted=True)
    first_last, second = s.actions()
    assert first_last.message.last and isinstance(second, ss.ReadSnapshot)  # no log read yet
    s.snapshot_read([], position=None, exhausted=True)
    _, log = s.actions()
    assert log == ss.ReadLog(30)


def test_a_position_before_the_horizon_must_resnapshot_and_ends_every_subscription():
    s = ready()
    s.receive(p.Subscribe(shapes=[p.Shape("tasks")], cursor=5))
    s.actions()
    s.log_read([], more=False, oldest=9, head=12)
    assert sent(s.actions()) == [p.MustResnapshot(oldest=9)]
    assert s.shapes == [] and not s.started
    s.receive(p.Subscribe(shapes=[p.Shape("tasks")], snapshot=True))
    assert isinstance(s.actions()[0], ss.ReadSnapshot)


def test_a_catching_up_stream_selects_by_routing_keys_and_sends_a_moving_row_whole():
    s = ready()
    s.receive(p.Subscribe(shapes=[WEB], cursor=0))
    s.actions()
    full = {"title": ("t", 1, SITE), "repository": ("acme/web", 2, SITE)}
    gone = {"title": ("t", 1, SITE), "repository": ("y", 3, SITE)}
    entries = [
        sh.LogEntry(1, p.ServerTx(1, [row("in", title="a")]), [sh.RowKeys("tasks", "in", {"repository": "acme/web"}, {})]),
        sh.LogEntry(2, p.ServerTx(2, [row("out", title="b")]), [sh.RowKeys("tasks", "out", {"repository": "x"}, {})]),
        sh.LogEntry(3, p.ServerTx(3, [row("mv", repository="acme/web")]),
                    [sh.RowKeys("tasks", "mv", {"repository": "acme/web"}, {"repository": "x"}, full)]),
        sh.LogEntry(4, p.ServerTx(4, [row("mv", repository="y")]),
                    [sh.RowKeys("tasks", "mv", {"repository": "y"}, {"repository": "acme/web"}, gone)]),
    ]  # fmt: skip
    s.log_read(entries, more=False)
    changes, up = sent(s.actions())
    assert [tx.seq for tx in changes.txs] == [1, 3, 4]
    assert changes.txs[0].changes[0].cells == {"title": ("a", 1, SITE)}  # inside before and after: the change
    assert changes.txs[1].changes[0].cells == full  # moved in: whole
    assert changes.txs[2].changes[0].cells == gone  # moved out: whole too (see the next test)
    assert up == p.UpToDate(cursor=4)


def test_a_row_moving_between_two_shapes_of_a_stream_is_sent_whole():
    """A stream follows r1 and r2. Task R moves from r1 to r2, or changes
    status while staying at r1 and entering a completed-tasks shape: each
    time it enters or leaves one of the shapes, so it is sent whole. Being
    inside the r1 shape before does not prove the subscriber holds R: that
    shape's snapshot may have been read after R left it (a shape added to a
    live replica, or a second snapshot read later than the first)."""
    r1, r2 = p.Shape("tasks", where={"repository": ["r1"]}), p.Shape("tasks", where={"repository": ["r2"]})
    done = p.Shape("tasks", where={"status": ["completed"]})
    full = {"title": ("t", 1, SITE), "status": ("pending", 1, SITE), "repository": ("r2", 2, SITE)}
    moved = sh.LogEntry(
        2, p.ServerTx(2, [row("R", repository="r2")]),
        [sh.RowKeys("tasks", "R", {"repository": "r2", "status": "pending"}, {"repository": "r1"}, full)],
    )  # fmt: skip
    selection = sh.by_table(sh.check_shape(shape) for shape in (r1, r2))
    assert sh.select(moved, selection).changes[0].cells == full
    completed = {**full, "status": ("completed", 3, SITE), "repository": ("r1", 1, SITE)}
    entered = sh.LogEntry(
        3, p.ServerTx(3, [row("R", status="completed")]),
        [sh.RowKeys("tasks", "R", {"repository": "r1", "status": "completed"}, {"status": "pending"}, completed)],
    )  # fmt: skip
    selection = sh.by_table(sh.check_shape(shape) for shape in (r1, done))
    assert sh.select(entered, selection).changes[0].cells == completed
    # A change moving R into or out of none of the shapes carries the changed cells only.
    selection = sh.by_table([sh.check_shape(r1)])
    assert sh.select(entered, selection).changes[0].cells == {"status": ("completed", 1, SITE)}


def live_then_pushed(shape: p.Shape) -> ss.ServerSession:
    """A session live at 3 on ``shape``, whose push was merged as entry 4."""
    s = ready()
    s.receive(p.Subscribe(shapes=[shape], id="w"))
    s.actions()
    s.log_read([], more=False, head=3)
    s.actions()
    s.receive(p.Push(txs=[p.LocalTx(1, [p.LocalChange(1, "tasks", "t9", 1, {"repository": "elsewhere"})])]))
    s.actions()
    s.merged(upto_seq=1, log_seq=4)
    return s


def test_a_filtered_stream_reads_to_the_end_after_its_own_push_so_the_writer_can_settle():
    """The client waits until its cursor passes the entry its push added
    (Ack.log_seq); a filtered stream is routed only entries its shapes select,
    so after the Ack it reads to the end of the log and says UpToDate there."""
    s = live_then_pushed(WEB)
    actions = s.actions()
    assert sent(actions) == [p.Ack(upto_seq=1, log_seq=4)]
    assert ss.Live(None, 3) in actions and ss.ReadLog(3) in actions
    s.log_read([], more=False, head=4)  # entry 4 is not the stream's: nothing but the position
    assert sent(s.actions()) == [p.UpToDate(cursor=4)]
    assert s.live


def test_a_whole_table_stream_waits_for_the_router_after_a_push():
    s = live_then_pushed(p.Shape("tasks"))
    assert s.actions() == [ss.Send(p.Ack(upto_seq=1, log_seq=4))]  # entry 4 reaches it through the router
    assert s.live


def test_unsubscribe_while_live_stops_routing():
    s = ready()
    s.receive(p.Subscribe(shapes=[WEB], id="w"))
    s.actions()
    s.log_read([], more=False, head=3)
    s.actions()
    s.receive(p.Unsubscribe(id="w"))
    assert s.actions() == [ss.Live(None, 3)]
    assert not s.live


# --- the client -----------------------------------------------------------------------


def client(**kw) -> cs.ClientSession:
    session = cs.ClientSession(token="t", site=SITE, tables=TABLES, **kw)
    session.start()
    session.receive(p.Welcome(tenant="acme", acked_seq=0))
    return session


def test_the_client_subscribes_as_told_and_settles_only_after_the_last_chunk():
    subs = [cs.Subscription("live", [p.Shape("tasks")]), cs.Subscription("k", [WEB], snapshot=True, resume="0:r", cursor=7)]
    s = client(cursor=3, subscriptions=subs)
    _, first, second = s.messages_to_send()
    assert first == p.Subscribe(shapes=[p.Shape("tasks")], cursor=3, id="live")
    assert second == p.Subscribe(shapes=[WEB], cursor=7, id="k", snapshot=True, resume="0:r", columnar=True)
    s.receive(p.UpToDate(cursor=3))
    assert not s.settled and s.snapshotting
    s.receive(p.Snapshot(rows=[row("r9")], position=7, last=True, id="k"))
    assert s.settled and s.cursor == 3  # not a fresh replica: its cursor stands
    events = s.events_received()
    assert cs.SnapshotChunk("k", [row("r9")], 7, True, "", cursor=3) in events


def test_a_fresh_client_takes_the_snapshot_position_as_its_cursor_and_refuses_unasked_chunks():
    s = client(subscriptions=[cs.Subscription("k", [WEB], snapshot=True, cursor=0)])
    s.receive(p.Snapshot(rows=[], position=12, last=True, id="k"))
    assert s.cursor == 12
    with pytest.raises(ProtocolError):
        s.receive(p.Snapshot(rows=[], position=12, id="other"))


def test_shapes_finishing_at_different_positions_leave_the_cursor_at_the_smallest():
    """Each shape's snapshot is consistent with its own position (a merge may
    land between two of them): the log must be followed from the oldest, or a
    row changed between the two positions in the older shape never arrives."""
    subs = [cs.Subscription(name, [p.Shape(name)], snapshot=True, cursor=0) for name in ("tasks", "task_messages")]
    s = client(subscriptions=subs)
    s.receive(p.Snapshot(rows=[], position=0, last=True, id="tasks"))
    s.receive(p.Snapshot(rows=[], position=5, last=True, id="task_messages"))
    assert s.cursor == 0
    s = client(subscriptions=subs)
    s.receive(p.Snapshot(rows=[], position=9, last=True, id="tasks"))
    s.receive(p.Snapshot(rows=[], position=4, last=True, id="task_messages"))  # a resumed one, older
    assert s.cursor == 4


def test_a_snapshot_older_than_the_cursor_of_live_shapes_moves_the_cursor_back():
    subs = [cs.Subscription("live", [p.Shape("tasks")]), cs.Subscription("k", [WEB], snapshot=True, resume="0:r", cursor=2)]
    s = client(cursor=6, subscriptions=subs)
    s.receive(p.Snapshot(rows=[], position=2, last=True, id="k"))
    assert s.cursor == 2  # the server starts the stream from 2 too
    last = [e for e in s.events_received() if isinstance(e, cs.SnapshotChunk)][-1]
    assert last.cursor == 2  # what the driver keeps


def test_a_snapshot_finishing_after_the_stream_started_leaves_the_cursor():
    """A snapshot the server began while the stream ran: the stream served its
    shape from before the snapshot's position, so a position older than the
    cursor does not move it back (nothing would send those entries again)."""
    subs = [cs.Subscription(name, [p.Shape(name)], snapshot=True, cursor=0) for name in ("tasks", "task_messages")]
    s = client(subscriptions=subs)
    s.receive(p.Snapshot(rows=[], position=0, last=True, id="tasks"))
    s.receive(p.Changes(txs=[p.ServerTx(1, [row("r1", title="x")])], cursor=1))
    s.receive(p.Snapshot(rows=[], position=0, last=True, id="task_messages"))
    assert s.cursor == 1
    assert [e.cursor for e in s.events_received() if isinstance(e, cs.SnapshotChunk)] == [0, 1]


# --- fetching rows (reconciling filtered shapes) ------------------------------------


def test_a_fetch_asks_the_store_for_the_rows_and_answers_with_them():
    s = ready()
    s.receive(p.Fetch(id="f1", table="tasks", ids=["r2", "r1", "r2"]))
    assert s.actions() == [ss.FetchRows("f1", "tasks", ["r2", "r1"])]  # each id once
    s.rows_read("f1", [row("r1", title="x", _deleted=1)])
    assert sent(s.actions()) == [p.Rows(id="f1", rows=[row("r1", title="x", _deleted=1)])]
    with pytest.raises(ProtocolError):
        s.rows_read("f1", [])  # answered already


def test_fetches_of_unknown_tables_too_many_ids_or_a_name_in_use_are_refused_and_change_nothing():
    s = ready()
    for bad in (
        p.Fetch(id="a", table="secrets", ids=["r1"]),
        p.Fetch(id="b", table="tasks", ids=[f"r{i}" for i in range(p.MAX_FETCH_IDS + 1)]),
        p.Fetch(id="c", table="tasks", ids=[1]),  # type: ignore[list-item]
    ):
        s.receive(bad)
        (error,) = sent(s.actions())
        assert error.code == "bad_fetch" and not error.fatal
    s.receive(p.Fetch(id="d", table="tasks", ids=["r1"]))
    s.actions()
    s.receive(p.Fetch(id="d", table="tasks", ids=["r2"]))
    (error,) = sent(s.actions())
    assert error.code == "bad_fetch"
    assert s.state is ss.State.READY


def test_a_fetch_that_cannot_be_read_ends_the_session():
    s = ready()
    s.receive(p.Fetch(id="f", table="tasks", ids=["r1"]))
    s.actions()
    s.fetch_failed("unavailable", "down")
    actions = s.actions()
    assert sent(actions)[0].fatal and isinstance(actions[-1], ss.Close)


def test_the_client_fetches_in_bounded_messages_and_settles_only_once_answered():
    s = client(subscriptions=[cs.Subscription("live", [p.Shape("tasks")])])
    s.messages_to_send()
    s.receive(p.UpToDate(cursor=0))
    assert s.settled
    ids = [f"r{i:05}" for i in range(p.MAX_FETCH_IDS + 1)]
    assert s.fetch("tasks", ids + ids[:3]) == ["f1", "f2"]
    first, second = s.messages_to_send()
    assert first == p.Fetch(id="f1", table="tasks", ids=ids[: p.MAX_FETCH_IDS])
    assert second == p.Fetch(id="f2", table="tasks", ids=ids[p.MAX_FETCH_IDS :])
    assert not s.settled and s.fetching == 2
    s.receive(p.Rows(id="f2", rows=[row("r01000", title="x")]))
    assert not s.settled
    s.receive(p.Rows(id="f1", rows=[]))
    assert s.settled and s.cursor == 0  # fetched rows never move the cursor
    assert [e for e in s.events_received() if isinstance(e, cs.RowsFetched)] == [
        cs.RowsFetched([row("r01000", title="x")], "f2"),
        cs.RowsFetched([], "f1"),
    ]
    with pytest.raises(ProtocolError):
        s.receive(p.Rows(id="f1", rows=[]))  # not asked for (any more)


def test_the_client_refuses_to_fetch_what_it_cannot_ask_for():
    s = client()
    s.messages_to_send()
    for table, ids in (("secrets", ["r1"]), ("tasks", [1])):
        with pytest.raises(ProtocolError):
            s.fetch(table, ids)
    assert s.messages_to_send() == [] and s.fetching == 0
    idle = cs.ClientSession(token="t", site=SITE, tables=TABLES)
    with pytest.raises(ProtocolError):
        idle.fetch("tasks", ["r1"])


def test_a_refused_fetch_no_longer_holds_the_client_back():
    s = client(subscriptions=[cs.Subscription("live", [p.Shape("tasks")])])
    s.receive(p.UpToDate(cursor=0))
    s.fetch("tasks", ["r1"])
    s.receive(p.Error(code="bad_fetch", message="no", fatal=False))
    assert s.settled


def test_fetch_and_rows_round_trip_as_frames():
    for message in (p.Fetch(id="f", table="tasks", ids=["a", "b"]), p.Rows(id="f", rows=[row("a", title="x")])):
        assert p.decode(p.encode(message)) == message
