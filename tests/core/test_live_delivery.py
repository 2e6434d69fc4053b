"""Live deliveries shared by many streams, and the UpToDate folded into Changes (no I/O)."""

from __future__ import annotations

from syncstore.core import client_session as cs
from syncstore.core import protocol as p
from syncstore.core import server_session as ss
from syncstore.core import shapes as sh

SITE = b"s" * 16
TASKS = p.Shape("tasks")


def live(*, changes_cursor: bool, max_frame: int = 0) -> ss.ServerSession:
    """A session whose stream went live at position 10."""
    s = ss.ServerSession(tables=("tasks",), max_frame=max_frame)
    s.receive(p.Hello(token="t", site=SITE, changes_cursor=changes_cursor))
    s.actions()
    s.accept(ss.Identity("acme", frozenset({"sync"}), None), acked_seq=0)
    s.receive(p.Subscribe(shapes=[TASKS], cursor=10))
    s.actions()
    s.log_read([], more=False, head=10)
    assert s.actions()[-1] == ss.Live([sh.check_shape(TASKS)], 10)
    return s


def tx(seq: int, title: str = "x") -> p.ServerTx:
    return p.ServerTx(seq, [p.RowChange("tasks", f"r{seq}", {"title": (title, seq, SITE)})])


def frames(actions: list[ss.Action]) -> list[bytes]:
    out: list[bytes] = []
    for action in actions:
        assert isinstance(action, ss.SendEncoded), action
        out.extend(action.frames)
    return out


def test_streams_of_the_same_shapes_share_the_frames_of_a_delivery():
    new, old, other_new = live(changes_cursor=True), live(changes_cursor=False), live(changes_cursor=True)
    delivery = ss.Delivery([(11, tx(11)), (12, tx(12))])
    new.deliver(delivery)
    old.deliver(delivery)
    other_new.deliver(delivery)
    (folded,) = frames(new.actions())
    (same,) = frames(other_new.actions())
    assert same is folded  # encoded once, whatever the number of streams
    assert p.decode(folded) == p.Changes(txs=[tx(11), tx(12)], cursor=12)
    # A client that does not read Changes.cursor still gets its UpToDate.
    assert [p.decode(f) for f in frames(old.actions())] == [p.Changes(txs=[tx(11), tx(12)]), p.UpToDate(cursor=12)]
    assert new.position == old.position == 12


def test_a_stream_already_past_part_of_a_delivery_gets_only_the_rest():
    s = live(changes_cursor=True)
    s.deliver(ss.Delivery([(11, tx(11))]))
    s.actions()
    s.deliver(ss.Delivery([(11, tx(11)), (13, tx(13))]))
    assert [a.message for a in s.actions()] == [p.Changes(txs=[tx(13)], cursor=13)]
    s.deliver(ss.Delivery([(12, tx(12)), (13, tx(13))]))
    assert s.actions() == []  # nothing new: nothing sent, the position stays
    assert s.position == 13


def test_large_deliveries_are_split_and_only_the_last_frame_carries_the_cursor():
    big = "y" * 3_000
    s = live(changes_cursor=True, max_frame=4_000)
    s.deliver(ss.Delivery([(seq, tx(seq, big)) for seq in range(11, 15)]))
    messages = [p.decode(f) for f in frames(s.actions())]
    assert len(messages) == 4 and all(isinstance(m, p.Changes) for m in messages)
    assert [t.seq for m in messages for t in m.txs] == [11, 12, 13, 14]
    assert [m.cursor for m in messages] == [0, 0, 0, 14]


def test_a_client_reads_the_folded_cursor_as_an_up_to_date():
    client = cs.ClientSession(token="t", site=SITE, tables=["tasks"], cursor=10)
    client.start()
    (hello,) = client.messages_to_send()
    assert hello.changes_cursor
    client.receive(p.Welcome(tenant="acme", acked_seq=0))
    client.events_received()
    client.receive(p.Changes(txs=[tx(11)]))
    assert client.events_received() == [cs.RemoteTx(tx(11))] and not client.up_to_date
    client.receive(p.Changes(txs=[tx(12)], cursor=12))
    assert client.events_received() == [cs.RemoteTx(tx(12)), cs.UpToDate(12)]
    assert client.cursor == 12 and client.up_to_date
