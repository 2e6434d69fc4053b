"""Large transactions in the protocol sessions, message by message (no I/O).

Up: a local transaction in parts, acked as staged, resumed after what the
server staged. Down: a server transaction logged as a group of entries, kept
aside part by part and applied once whole, the cursor never inside it.
"""

from __future__ import annotations

import pytest

from syncstore.core import client_session as cs
from syncstore.core import protocol as p
from syncstore.core import server_session as ss
from syncstore.errors import ProtocolError

from .test_client_session import OTHER, ROW, SITE, local_tx, ready, server_tx, session


def part(tx: int, seqs: range, end: int, total: int) -> p.LocalTx:
    whole = local_tx(tx, *seqs)
    return p.LocalTx(tx, whole.changes, end, total)


def group_part(seq: int, end: int) -> p.ServerTx:
    return p.ServerTx(
        seq=seq, changes=[p.RowChange("tasks", ROW, {"title": (f"s{seq}", 5000 + seq, OTHER)})], group_end=end
    )


def taking_parts(**kw: object) -> cs.ClientSession:
    s = session(**kw)
    s.start()
    s.receive(p.Welcome(tenant="acme", acked_seq=int(kw.get("acked_seq", 0)), max_staged=1_000))  # type: ignore[arg-type]
    s.messages_to_send()
    s.events_received()
    return s


# --- up: parts ---------------------------------------------------------------------------------


def test_a_part_goes_alone_and_only_to_a_server_that_takes_parts():
    s = ready()  # an older server: no max_staged
    with pytest.raises(ProtocolError):
        s.push([part(1, range(1, 4), end=9, total=9)])
    s = taking_parts()
    with pytest.raises(ProtocolError):
        s.push([part(1, range(1, 4), end=9, total=9), local_tx(2, 10)])
    with pytest.raises(ProtocolError):
        s.push([part(1, range(1, 4), end=2, total=9)])  # end_seq before its own last change
    s.push([part(1, range(1, 4), end=9, total=9)])
    (push,) = s.messages_to_send()
    assert push.txs[0].is_part and push.txs[0].end_seq == 9 and s.pushed_seq == 3


def test_a_staged_ack_answers_the_part_but_acknowledges_nothing():
    s = taking_parts(max_in_flight=2)
    s.push([part(1, range(1, 4), end=9, total=9)])
    s.push([part(1, range(4, 7), end=9, total=9)])
    assert not s.can_push
    s.receive(p.Ack(upto_seq=0, staged_seq=3))
    assert s.in_flight == 1 and s.can_push and s.acked_seq == 0
    assert s.events_received() == []  # nothing merged yet
    s.push([part(1, range(7, 10), end=9, total=9)])
    s.receive(p.Ack(upto_seq=0, staged_seq=6))
    s.receive(p.Ack(upto_seq=9, log_seq=40))
    assert s.in_flight == 0 and s.acked_seq == 9 and s.events_received() == [cs.Acked(9, [])]


def test_a_new_connection_goes_on_after_what_the_server_staged():
    s = session(acked_seq=4)
    s.start()
    s.receive(p.Welcome(tenant="acme", acked_seq=4, max_staged=1_000, staged_seq=30))
    assert s.pushed_seq == 30 and s.acked_seq == 4 and s.max_staged == 1_000
    assert s.events_received() == [cs.Welcomed("acme", 4, 4, "", staged_seq=30)]


def test_a_staged_position_not_past_the_acked_one_means_nothing_staged():
    s = session()
    s.start()
    s.receive(p.Welcome(tenant="acme", acked_seq=12, staged_seq=10))
    assert s.pushed_seq == 12 and s.events_received()[0].staged_seq == 0


# --- down: groups ------------------------------------------------------------------------------


def test_a_group_is_kept_aside_then_applied_whole_with_the_cursor_at_its_end():
    s = ready(cursor=10)
    s.receive(p.Changes(txs=[group_part(11, 13), group_part(12, 13)]))
    events = s.events_received()
    assert [type(e) for e in events] == [cs.RemotePart, cs.RemotePart] and s.cursor == 10
    s.receive(p.Changes(txs=[group_part(13, 13), server_tx(14)], cursor=14))
    events = s.events_received()
    assert events[0] == cs.RemotePart(group_part(13, 13))
    assert events[1] == cs.RemoteGroup(11, 13)
    assert events[2] == cs.RemoteTx(server_tx(14)) and events[3] == cs.UpToDate(14) and s.cursor == 14


def test_up_to_date_inside_a_group_keeps_the_cursor_before_it():
    s = ready(cursor=10)
    s.receive(p.UpToDate(cursor=10))
    s.receive(p.Changes(txs=[group_part(11, 14), group_part(12, 14)], cursor=12))
    *_, up = s.events_received()
    assert up == cs.UpToDate(10) and s.cursor == 10 and not s.settled
    s.receive(p.Changes(txs=[group_part(13, 14), group_part(14, 14)], cursor=14))
    kinds = [type(e) for e in s.events_received()]
    assert kinds == [cs.RemotePart, cs.RemotePart, cs.RemoteGroup, cs.UpToDate] and s.cursor == 14 and s.settled


def test_a_group_whose_last_parts_were_not_for_us_ends_when_the_stream_passes_it():
    s = ready(cursor=10)
    s.receive(p.Changes(txs=[group_part(11, 15)]))
    s.receive(p.UpToDate(cursor=15))  # 12..15 selected nothing of our shapes
    assert s.events_received() == [cs.RemotePart(group_part(11, 15)), cs.RemoteGroup(11, 15), cs.UpToDate(15)]
    s.receive(p.Changes(txs=[group_part(16, 18)]))
    s.receive(p.Changes(txs=[server_tx(19)]))  # 17 and 18 were not ours either
    assert s.events_received()[1:] == [cs.RemoteGroup(16, 18), cs.RemoteTx(server_tx(19))] and s.cursor == 19


def test_the_end_of_a_group_alone_is_an_ordinary_transaction():
    # Its earlier parts selected nothing of ours: nothing else to wait for.
    s = ready(cursor=10)
    s.receive(p.Changes(txs=[group_part(13, 13)]))
    assert s.events_received() == [cs.RemoteTx(group_part(13, 13))] and s.cursor == 13


def test_a_group_applied_before_and_sent_again_is_applied_part_by_part():
    s = ready(cursor=20)
    s.receive(p.Changes(txs=[group_part(11, 13), group_part(12, 13), group_part(13, 13)]))
    assert [type(e) for e in s.events_received()] == [cs.RemoteTx] * 3 and s.cursor == 20


def test_the_parts_of_a_group_are_taken_in_log_order():
    s = ready(cursor=10)
    s.receive(p.Changes(txs=[group_part(13, 13), group_part(11, 13), group_part(12, 13)]))
    events = s.events_received()
    assert [e.tx.seq for e in events[:3]] == [11, 12, 13] and events[3] == cs.RemoteGroup(11, 13)


def test_must_resnapshot_drops_a_group_being_received():
    s = ready(cursor=10)
    s.receive(p.Changes(txs=[group_part(11, 13)]))
    s.receive(p.MustResnapshot(oldest=50))
    s.events_received()
    s.subscribe([cs.Subscription("", [p.Shape("tasks")])])
    s.receive(p.UpToDate(cursor=60))
    assert cs.RemoteGroup(11, 13) not in s.events_received() and s.cursor == 60


# --- the server's side -------------------------------------------------------------------------


def server(max_staged: int = 1_000, max_batch: int = 100) -> ss.ServerSession:
    session = ss.ServerSession(tables=["tasks"], max_batch=max_batch, max_staged=max_staged)
    session.receive(p.Hello(token="t", site=SITE))
    session.actions()
    return session


def test_the_welcome_says_parts_are_taken_and_how_far_they_are_staged():
    s = server()
    s.accept(ss.Identity("acme", frozenset({"sync"}), None), acked_seq=4, staged_seq=30)
    (send,) = s.actions()
    assert send.message.max_staged == 1_000 and send.message.staged_seq == 30
    s = server(max_staged=0)
    s.accept(ss.Identity("acme", frozenset({"sync"}), None), acked_seq=40, staged_seq=30)
    (send,) = s.actions()
    assert send.message.max_staged == 0 and send.message.staged_seq == 0


def ready_server(**kw: int) -> ss.ServerSession:
    s = server(**kw)
    s.accept(ss.Identity("acme", frozenset({"sync"}), None), acked_seq=0)
    s.actions()
    return s


@pytest.mark.parametrize(
    "push, problem",
    [
        (p.Push(txs=[part(1, range(1, 4), end=9, total=9), local_tx(2, 10)]), "alone"),
        (p.Push(txs=[part(1, range(1, 4), end=2, total=9)]), "end_seq"),
        (p.Push(txs=[part(1, range(1, 4), end=9, total=2)]), "total"),
        (p.Push(txs=[part(1, range(1, 200), end=300, total=300)]), "at most 100"),
    ],
)
def test_a_bad_part_is_refused_and_merges_nothing(push, problem):
    s = ready_server()
    s.receive(push)
    (send,) = s.actions()
    assert send.message.code == "bad_push" and problem in send.message.message


def test_a_server_that_takes_no_parts_refuses_them():
    s = ready_server(max_staged=0)
    s.receive(p.Push(txs=[part(1, range(1, 4), end=9, total=9)]))
    (send,) = s.actions()
    assert send.message.code == "bad_push" and "no transactions in parts" in send.message.message


def test_a_staged_part_is_answered_with_its_staged_position():
    s = ready_server()
    s.receive(p.Push(txs=[part(1, range(1, 4), end=9, total=9)]))
    (merge,) = s.actions()
    assert isinstance(merge, ss.Merge) and merge.txs[0].end_seq == 9
    s.merged(upto_seq=0, staged_seq=3)
    (send,) = s.actions()
    assert send.message == p.Ack(upto_seq=0, staged_seq=3)


def test_a_live_stream_reads_a_group_at_the_clients_pace_instead_of_queueing_it():
    from .test_live_delivery import live, tx

    s = live(changes_cursor=True)
    s.deliver(ss.Delivery([(11, tx(11))]))
    s.actions()
    parts = [(seq, p.ServerTx(seq, tx(seq).changes, group_end=14)) for seq in (12, 13, 14)]
    s.deliver(ss.Delivery(parts))
    assert s.actions() == [ss.Live(None, 11), ss.ReadLog(11)]  # nothing queued: the read sends it, paced
    assert not s.live and s.position == 11
    s.log_read(parts, more=False, head=14)
    sent, live_again = s.actions()[-2:]
    assert sent == ss.Send(p.UpToDate(cursor=14)) and live_again.position == 14 and s.live


def test_pushes_retracted_after_a_deferral_go_on_after_the_parts_staged():
    s = taking_parts(max_in_flight=3)
    for seqs in (range(1, 4), range(4, 7), range(7, 10)):
        s.push([part(1, seqs, end=12, total=12)])
    s.receive(p.Ack(upto_seq=0, staged_seq=3))
    # The second part was stamped too far ahead: deferred, the third dropped.
    s.receive(p.Ack(upto_seq=0))
    s.receive(p.Error(code="clock_drift", message="ahead", retry_after_ms=500))
    s.events_received()
    s.retract_pushes()
    assert s.pushed_seq == 3 and s.in_flight == 0 and s.acked_seq == 0
