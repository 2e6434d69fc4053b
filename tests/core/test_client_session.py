"""The client session state machine, message by message (no I/O, no server)."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncstore.schema import SCHEMA_VERSION
from syncstore.core import client_session as cs
from syncstore.core import protocol as p
from syncstore.errors import ProtocolError

SITE = bytes(range(16))
OTHER = bytes(range(16, 32))
ROW = "0190f6a4-0000-7000-8000-000000000001"


class Entry(NamedTuple):
    seq: int
    tx: int
    table: str
    id: str
    hlc: int
    values: dict[str, Any]
    seen: dict[str, tuple[int, bytes]] | None


def entry(seq: int, tx: int) -> Entry:
    return Entry(seq, tx, "tasks", ROW, 1000 + seq, {"title": f"t{seq}"}, None)


def local_tx(tx: int, *seqs: int) -> p.LocalTx:
    return cs.group_transactions([entry(s, tx) for s in seqs])[0]


def server_tx(seq: int) -> p.ServerTx:
    return p.ServerTx(seq=seq, changes=[p.RowChange("tasks", ROW, {"title": (f"s{seq}", 5000 + seq, OTHER)})])


def session(**kw: Any) -> cs.ClientSession:
    kw.setdefault("token", "secret-token")
    kw.setdefault("site", SITE)
    kw.setdefault("tables", ["tasks", "task_messages"])
    return cs.ClientSession(**kw)


def ready(**kw: Any) -> cs.ClientSession:
    s = session(**kw)
    s.start()
    s.receive(p.Welcome(tenant="acme", acked_seq=kw.get("acked_seq", 0)))
    s.messages_to_send()
    s.events_received()
    return s


def test_start_sends_hello_with_persisted_position():
    s = session(cursor=42, acked_seq=7, schema=3)
    s.start()
    (hello,) = s.messages_to_send()
    assert hello == p.Hello(
        token="secret-token", site=SITE, schema=3, cursor=42, acked_seq=7, changes_cursor=True,
        synced_schema=SCHEMA_VERSION,
    )
    assert s.state is cs.State.HELLO_SENT
    with pytest.raises(ProtocolError):
        s.start()


def test_repr_never_shows_the_token():
    assert "secret-token" not in repr(session())


def test_welcome_subscribes_every_table_from_the_cursor():
    s = session(cursor=9)
    s.start()
    s.messages_to_send()
    s.receive(p.Welcome(tenant="acme", acked_seq=0, max_batch=50))
    (sub,) = s.messages_to_send()
    assert sub == p.Subscribe(shapes=[p.Shape("tasks"), p.Shape("task_messages")], cursor=9)
    assert s.events_received() == [cs.Welcomed("acme", 0, 0, "")]
    assert s.state is cs.State.READY and s.tenant == "acme" and s.max_batch == 50 and s.max_frame == 0


def test_welcome_with_more_acked_than_we_knew_skips_those_changes():
    # The last Ack was lost with the connection: the server already has 1..5.
    s = session(acked_seq=2)
    s.start()
    s.receive(p.Welcome(tenant="acme", acked_seq=5))
    assert s.acked_seq == 5 and s.pushed_seq == 5
    with pytest.raises(ProtocolError):
        s.push([local_tx(1, 4, 5)])  # already merged: must not be sent again
    s.push([local_tx(2, 6)])


def test_welcome_with_less_acked_than_we_knew_resends():
    s = session(acked_seq=8)
    s.start()
    s.receive(p.Welcome(tenant="acme", acked_seq=3))
    assert s.events_received() == [cs.Welcomed("acme", 3, 8, "")]
    s.push([local_tx(1, 4, 5)])  # resent: the server applies each (site, seq) once


def test_other_protocol_version_fails():
    s = session()
    s.start()
    with pytest.raises(ProtocolError) as exc:
        s.receive(p.Welcome(tenant="acme", acked_seq=0, protocol=p.PROTOCOL_VERSION + 1))
    assert exc.value.code == "protocol_version"
    assert s.state is cs.State.FAILED


@pytest.mark.parametrize(
    "message",
    [
        p.Ack(upto_seq=1),
        p.Changes(txs=[]),
        p.UpToDate(cursor=1),
    ],
)
def test_messages_before_welcome_are_violations(message):
    s = session()
    s.start()
    with pytest.raises(ProtocolError):
        s.receive(message)
    assert s.state is cs.State.FAILED
    with pytest.raises(ProtocolError):
        s.receive(p.Ping())


@pytest.mark.parametrize(
    "message",
    [
        p.Hello(token="x", site=SITE),
        p.Push(txs=[]),
        p.Subscribe(shapes=[]),
        p.Resolved(conflict_ids=[]),
        p.Snapshot(rows=[], position=0),
        p.Welcome(tenant="acme", acked_seq=0),
    ],
)
def test_messages_a_server_never_sends_here_are_violations(message):
    s = ready()
    with pytest.raises(ProtocolError) as exc:
        s.receive(message)
    assert exc.value.code == "unexpected_message"


def test_push_requires_ready_and_order():
    s = session()
    with pytest.raises(ProtocolError):
        s.push([local_tx(1, 1)])
    s = ready()
    with pytest.raises(ProtocolError):
        s.push([])
    s.push([local_tx(1, 1, 2)])
    with pytest.raises(ProtocolError):
        s.push([local_tx(1, 2, 3)])  # overlaps what was sent
    with pytest.raises(ProtocolError):
        s.push([local_tx(2, 4), local_tx(3, 3)])  # out of order
    s.push([local_tx(2, 3), local_tx(3, 4)])
    assert [type(m) for m in s.messages_to_send()] == [p.Push, p.Push]


def test_flow_control_bounds_unacked_pushes():
    s = ready(max_in_flight=2)
    s.push([local_tx(1, 1)])
    s.push([local_tx(2, 2)])
    assert not s.can_push
    with pytest.raises(ProtocolError):
        s.push([local_tx(3, 3)])
    s.receive(p.Ack(upto_seq=1))
    assert s.can_push and s.in_flight == 1
    assert s.events_received() == [cs.Acked(1, [])]


def test_ack_covering_part_of_a_push_keeps_it_in_flight():
    s = ready(max_in_flight=1)
    s.push([local_tx(1, 1), local_tx(2, 2, 3)])
    s.receive(p.Ack(upto_seq=1))
    assert s.in_flight == 1 and s.acked_seq == 1
    s.receive(p.Ack(upto_seq=3))
    assert s.in_flight == 0 and s.acked_seq == 3


def test_stale_or_duplicate_acks_never_move_back():
    s = ready()
    s.push([local_tx(1, 1, 2)])
    s.receive(p.Ack(upto_seq=2))
    s.receive(p.Ack(upto_seq=1))
    s.receive(p.Ack(upto_seq=2))
    assert s.acked_seq == 2
    assert s.events_received() == [cs.Acked(2, [])]


def test_ack_beyond_what_this_session_sent_moves_the_push_point():
    # Another connection of the same replica pushed 1..9 meanwhile.
    s = ready()
    s.push([local_tx(1, 1)])
    s.receive(p.Ack(upto_seq=9))
    assert s.acked_seq == 9 and s.pushed_seq == 9 and s.in_flight == 0
    with pytest.raises(ProtocolError):
        s.push([local_tx(2, 5)])


def test_rejections_are_reported_even_without_progress():
    s = ready()
    s.push([local_tx(1, 1)])
    rejection = p.Rejection(tx=1, code="validation", message="tasks.title: is required")
    s.receive(p.Ack(upto_seq=1, rejected=[rejection]))
    s.receive(p.Ack(upto_seq=1, rejected=[rejection]))
    assert s.events_received() == [cs.Acked(1, [rejection]), cs.Acked(1, [rejection])]


def test_changes_become_remote_transactions_and_move_the_cursor():
    s = ready(cursor=3)
    s.receive(p.Changes(txs=[server_tx(4), server_tx(7)]))
    assert s.events_received() == [cs.RemoteTx(server_tx(4)), cs.RemoteTx(server_tx(7))]
    assert s.cursor == 7 and not s.up_to_date
    s.receive(p.UpToDate(cursor=9))
    assert s.events_received() == [cs.UpToDate(9)]
    assert s.cursor == 9 and s.up_to_date


def test_duplicate_or_late_transactions_are_still_applied_and_cursor_never_regresses():
    s = ready(cursor=10)
    s.receive(p.Changes(txs=[server_tx(8), server_tx(12), server_tx(11)]))
    assert [e.tx.seq for e in s.events_received()] == [8, 12, 11]
    assert s.cursor == 12
    s.receive(p.UpToDate(cursor=5))
    assert s.cursor == 12


def test_settled_needs_up_to_date_and_no_push_in_flight():
    s = ready()
    assert not s.settled
    s.push([local_tx(1, 1)])
    s.receive(p.UpToDate(cursor=0))
    assert not s.settled
    s.receive(p.Ack(upto_seq=1))
    assert s.settled


def test_settled_waits_for_the_log_entries_our_push_made():
    s = ready(cursor=10)
    s.push([local_tx(1, 1)])
    s.receive(p.UpToDate(cursor=10))
    s.receive(p.Ack(upto_seq=1, log_seq=12))
    assert not s.settled  # the push's entry (and its conflicts) is still on its way
    s.receive(p.Changes(txs=[server_tx(12)]))
    assert s.settled


def test_ping_gets_pong():
    s = ready()
    s.receive(p.Ping(nonce=5))
    assert s.messages_to_send() == [p.Pong(nonce=5)]
    s.receive(p.Pong(nonce=1))
    assert s.messages_to_send() == [] and s.events_received() == []


def test_errors_surface_and_fatal_ones_end_the_session():
    s = ready()
    s.receive(p.Error(code="busy", message="try later"))
    assert s.events_received() == [cs.SessionError("busy", "try later", False)]
    assert s.state is cs.State.READY
    s.receive(p.Error(code="auth", message="token expired", fatal=True))
    assert s.events_received() == [cs.SessionError("auth", "token expired", True)]
    assert s.state is cs.State.FAILED
    assert not s.can_push


def test_error_during_hello_is_an_event():
    s = session()
    s.start()
    s.receive(p.Error(code="auth", message="forged signature", fatal=True))
    assert s.events_received()[0].code == "auth"
    assert s.state is cs.State.FAILED


def test_must_resnapshot_ends_the_subscriptions_and_the_session_goes_on():
    s = ready(cursor=3)
    s.receive(p.MustResnapshot(oldest=100))
    assert s.events_received() == [cs.Resnapshot(100)]
    assert s.state is cs.State.READY and not s.subscribed and not s.settled
    s.subscribe([cs.Subscription("again", [p.Shape("tasks")], snapshot=True, cursor=0)])
    (sub,) = s.messages_to_send()
    assert sub == p.Subscribe(shapes=[p.Shape("tasks")], cursor=0, id="again", snapshot=True, columnar=True)


def test_resolved_is_sent_only_when_ready():
    s = session()
    with pytest.raises(ProtocolError):
        s.resolved(["c1"])
    s = ready()
    s.resolved([])
    assert s.messages_to_send() == []
    s.resolved(["c1", "c2"])
    resolved, ping = s.messages_to_send()
    assert resolved == p.Resolved(conflict_ids=["c1", "c2"])
    s.receive(p.Pong(nonce=ping.nonce + 1))  # someone else's pong proves nothing
    assert s.events_received() == []
    s.receive(p.Pong(nonce=ping.nonce))
    assert s.events_received() == [cs.ResolutionsDelivered(["c1", "c2"])]
    s.receive(p.Pong(nonce=ping.nonce))
    assert s.events_received() == []


def test_settled_waits_until_the_server_confirmed_reading_a_resolution():
    s = ready()
    s.receive(p.UpToDate(cursor=0))
    assert s.settled
    s.resolved(["c1"])
    _, ping = s.messages_to_send()
    assert not s.settled
    s.receive(p.Pong(nonce=ping.nonce))
    assert s.settled


def test_pushes_dropped_by_the_server_are_retracted_and_pushed_again():
    s = ready()
    s.push([local_tx(1, 1)])
    s.push([local_tx(2, 2), local_tx(3, 3)])
    s.messages_to_send()
    s.receive(p.Ack(upto_seq=1))
    s.receive(p.Error(code="clock_drift", message="ahead", retry_after_ms=250))
    assert s.events_received()[-1] == cs.SessionError("clock_drift", "ahead", False, 250)
    assert s.in_flight == 1 and s.state is cs.State.READY
    s.retract_pushes()
    assert s.in_flight == 0 and s.pushed_seq == s.acked_seq == 1
    s.push([local_tx(2, 2)])  # from the deferred transaction again
    assert s.messages_to_send() == [p.Push(txs=[local_tx(2, 2)])]


def test_welcomed_carries_the_servers_clock_and_drift_cap():
    s = session()
    s.start()
    s.receive(p.Welcome(tenant="acme", acked_seq=0, server_time_ms=123, max_drift_ms=5_000))
    welcomed = next(e for e in s.events_received() if isinstance(e, cs.Welcomed))
    assert (welcomed.server_time_ms, welcomed.max_drift_ms) == (123, 5_000)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        session(max_in_flight=0)
    with pytest.raises(ValueError):
        session(max_batch=0)


# --- grouping the change log into pushes -----------------------------------------


def test_group_transactions_keeps_each_local_transaction_whole():
    txs = cs.group_transactions([entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 5), entry(5, 5)])
    assert [(t.tx, [c.seq for c in t.changes]) for t in txs] == [(1, [1, 2]), (2, [3]), (5, [4, 5])]
    assert txs[0].changes[0] == p.LocalChange(seq=1, table="tasks", id=ROW, hlc=1001, values={"title": "t1"})


def test_group_transactions_carries_seen_clocks():
    seen = {"title": (77, OTHER)}
    (tx,) = cs.group_transactions([Entry(1, 1, "tasks", ROW, 9, {"title": "x"}, seen)])
    assert tx.changes[0].seen == {"title": (77, OTHER)}


def test_take_batch_never_splits_and_never_stalls():
    txs = cs.group_transactions([entry(1, 1), entry(2, 2), entry(3, 2), entry(4, 3)])
    assert [t.tx for t in cs.take_batch(txs, 3)] == [1, 2]
    assert [t.tx for t in cs.take_batch(txs, 2)] == [1]
    big = cs.group_transactions([entry(s, 9) for s in range(1, 11)])
    assert [len(t.changes) for t in cs.take_batch(big, 3)] == [10]  # alone, but sent


@given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=30), st.integers(min_value=1, max_value=6))
def test_batches_cover_the_log_exactly_once_in_order(sizes, limit):
    entries, seq = [], 0
    for tx, size in enumerate(sizes, start=1):
        for _ in range(size):
            seq += 1
            entries.append(entry(seq, tx))
    remaining = cs.group_transactions(entries)
    s = ready(max_in_flight=1, max_batch=limit)
    sent: list[int] = []
    while remaining:
        batch = cs.take_batch(remaining, s.max_batch)
        assert sum(len(t.changes) for t in batch) <= limit or len(batch) == 1
        s.push(batch)
        (push,) = s.messages_to_send()
        sent += [c.seq for t in push.txs for c in t.changes]
        s.receive(p.Ack(upto_seq=s.pushed_seq))
        remaining = remaining[len(batch):]
    assert sent == list(range(1, seq + 1))
    assert s.acked_seq == seq
