"""The server session alone, with no I/O: what it asks the driver to do, what it answers."""

from __future__ import annotations

import pytest

from syncstore.core import protocol as p
from syncstore.core import server_session as ss
from syncstore.errors import ProtocolError

SITE = b"s" * 16
TABLES = ("tasks", "task_messages")


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def ready(*, scopes=("sync",), expires_at_ms=None, acked=0, clock=None, **kw) -> ss.ServerSession:
    session = ss.ServerSession(tables=TABLES, now_ms=clock or Clock(), **kw)
    session.receive(p.Hello(token="t", site=SITE))
    assert session.actions() == [ss.Authenticate("t", SITE, 0, 0)]
    session.accept(ss.Identity("acme", frozenset(scopes), expires_at_ms), acked_seq=acked)
    (welcome,) = session.actions()
    assert isinstance(welcome.message, p.Welcome)
    return session


def sent(actions) -> list[p.Message]:
    return [a.message for a in actions if isinstance(a, ss.Send)]


def push(*txs: tuple[int, list[int]]) -> p.Push:
    return p.Push(
        txs=[
            p.LocalTx(tx, [p.LocalChange(seq, "tasks", "id", 1, {"title": "x"}) for seq in seqs]) for tx, seqs in txs
        ]
    )


def test_hello_then_welcome_with_the_servers_ack_record():
    session = ss.ServerSession(tables=TABLES, max_batch=50, max_frame=1000, server_id="srv", schema=3)
    session.receive(p.Hello(token="tok", site=SITE, cursor=7, acked_seq=4))
    assert session.state is ss.State.AUTHENTICATING
    assert session.actions() == [ss.Authenticate("tok", SITE, 7, 4)]
    session.accept(ss.Identity("acme", frozenset({"sync"}), None), acked_seq=9)
    (action,) = session.actions()
    welcome = action.message
    assert (welcome.tenant, welcome.acked_seq, welcome.max_batch, welcome.max_frame) == ("acme", 9, 50, 1000)
    assert (welcome.server_id, welcome.schema) == ("srv", 3)
    assert session.state is ss.State.READY


def test_anything_before_hello_is_fatal():
    session = ss.ServerSession(tables=TABLES)
    session.receive(p.Ping())
    error, close = session.actions()
    assert error.message.fatal and error.message.code == "unexpected_message"
    assert isinstance(close, ss.Close) and session.state is ss.State.CLOSED


@pytest.mark.parametrize(
    "hello, code",
    [
        (p.Hello(token="t", site=b"short"), "bad_site"),
        (p.Hello(token="t", site=SITE, protocol=99), "protocol_version"),
        (p.Hello(token="", site=SITE), "auth_required"),
    ],
)
def test_bad_hello_is_refused(hello, code):
    session = ss.ServerSession(tables=TABLES)
    session.receive(hello)
    error, close = session.actions()
    assert error.message.code == code and error.message.fatal
    assert isinstance(close, ss.Close)


def test_refused_token_closes_with_policy_violation():
    session = ss.ServerSession(tables=TABLES)
    session.receive(p.Hello(token="t", site=SITE))
    session.actions()
    session.refuse("bad_token", "forged")
    error, close = session.actions()
    assert error.message == p.Error(code="bad_token", message="forged", fatal=True)
    assert close == ss.Close(ss.CLOSE_POLICY_VIOLATION, "bad_token")


def test_one_merge_at_a_time_in_push_order():
    session = ready()
    session.receive(push((1, [1, 2])))
    session.receive(push((2, [3])))
    (merge,) = session.actions()
    assert isinstance(merge, ss.Merge) and merge.last_seq == 2
    session.merged(upto_seq=2)
    ack, second = session.actions()
    assert ack.message == p.Ack(upto_seq=2)
    assert isinstance(second, ss.Merge) and second.last_seq == 3
    rejection = p.Rejection(tx=2, code="bad_value", message="no")
    session.merged(upto_seq=3, rejected=[rejection], log_seq=41)
    assert sent(session.actions()) == [p.Ack(upto_seq=3, rejected=[rejection], log_seq=41)]
    assert not session.busy


def test_welcome_tells_the_drift_cap():
    session = ss.ServerSession(tables=TABLES, max_drift_ms=5_000, now_ms=Clock())
    session.receive(p.Hello(token="t", site=SITE))
    session.actions()
    session.accept(ss.Identity("acme", frozenset({"sync"}), None), acked_seq=0)
    (action,) = session.actions()
    assert (action.message.max_drift_ms, action.message.server_time_ms) == (5_000, 1_000_000)


def test_a_deferred_merge_acks_before_it_and_drops_what_follows_until_pushed_again():
    session = ready()
    session.receive(push((1, [1]), (2, [2]), (3, [3])))
    session.receive(push((4, [4])))  # queued behind the first
    session.actions()
    session.merge_deferred(upto_seq=1, first_seq=2, code="clock_drift", message="ahead", retry_after_ms=500)
    assert sent(session.actions()) == [
        p.Ack(upto_seq=1),
        p.Error(code="clock_drift", message="ahead", fatal=False, retry_after_ms=500),
    ]
    assert not session.busy and session.state is ss.State.READY  # the queued push was dropped
    session.receive(push((4, [4])))  # sent before the client heard: dropped too
    assert session.actions() == []
    session.receive(push((2, [2]), (3, [3]), (4, [4])))  # from the deferred transaction again
    (merge,) = session.actions()
    assert isinstance(merge, ss.Merge) and merge.last_seq == 4


def test_merged_without_a_merge_is_a_driver_bug():
    with pytest.raises(ProtocolError):
        ready().merged(upto_seq=1)


@pytest.mark.parametrize(
    "message, code",
    [
        (p.Push(txs=[]), "bad_push"),
        (p.Push(txs=[p.LocalTx(1, [])]), "bad_push"),
        (push((1, [2, 1])), "bad_push"),
        (push((1, [0])), "bad_push"),
        (push((1, [1 << 63])), "bad_push"),
        (push((1 << 63, [1])), "bad_push"),
        (push((1, list(range(1, 61))), (2, list(range(61, 121)))), "batch_too_large"),
    ],
)
def test_bad_pushes_get_an_error_and_merge_nothing(message, code):
    session = ready(max_batch=100)
    session.receive(message)
    (action,) = session.actions()
    assert action.message.code == code and not action.message.fatal
    assert session.state is ss.State.READY


def test_one_transaction_above_the_batch_limit_still_goes_to_the_store():
    # The client never splits a transaction, so refusing it here would block
    # the client forever; the store refuses it for good (and acks past it).
    session = ready(max_batch=10)
    session.receive(push((1, list(range(1, 21)))))
    (merge,) = session.actions()
    assert isinstance(merge, ss.Merge)


def test_read_scope_cannot_push_but_can_subscribe():
    session = ready(scopes=("read",))
    session.receive(push((1, [1])))
    (error,) = session.actions()
    assert error.message.code == "forbidden"
    session.receive(p.Subscribe(shapes=[p.Shape("tasks")]))
    assert session.actions() == [ss.ReadLog(0)]


def tx(seq: int, *tables: str) -> p.ServerTx:
    return p.ServerTx(seq, [p.RowChange(t, f"row{seq}", {"title": ("x", seq, SITE)}) for t in tables])


def test_subscribe_streams_the_log_then_up_to_date():
    session = ready()
    session.receive(p.Subscribe(shapes=[p.Shape("tasks")], cursor=5))
    assert session.actions() == [ss.ReadLog(5)]
    session.log_read([(6, tx(6, "tasks")), (7, tx(7, "task_messages")), (8, tx(8, "tasks", "task_messages"))], more=True)
    changes, read = session.actions()
    assert [t.seq for t in changes.message.txs] == [6, 8]  # 7 is not about a subscribed table
    assert [c.table for c in changes.message.txs[1].changes] == ["tasks"]
    assert read == ss.ReadLog(8)
    session.log_read([], more=False)
    assert sent(session.actions()) == [p.UpToDate(cursor=8)]


def test_commits_wake_the_stream_but_never_two_reads_at_once():
    session = ready()
    session.notify()  # not subscribed: nothing to do
    assert session.actions() == []
    session.receive(p.Subscribe(shapes=[p.Shape("tasks")]))
    assert session.actions() == [ss.ReadLog(0)]
    session.notify()
    session.notify()
    assert session.actions() == []  # a read is running; one more follows it
    session.log_read([(1, tx(1, "tasks"))], more=False)
    changes, again = session.actions()
    assert again == ss.ReadLog(1)
    session.log_read([], more=False)
    assert sent(session.actions()) == [p.UpToDate(cursor=1)]
    session.notify()
    assert session.actions() == [ss.ReadLog(1)]


def test_a_log_entry_is_never_sent_twice_on_one_stream():
    session = ready()
    session.receive(p.Subscribe(shapes=[p.Shape("tasks")]))
    session.actions()
    session.log_read([(1, tx(1, "tasks")), (2, tx(2, "tasks"))], more=False)
    session.actions()
    session.notify()
    session.actions()
    session.log_read([(2, tx(2, "tasks")), (3, tx(3, "tasks"))], more=False)
    changes, up = sent(session.actions())
    assert [t.seq for t in changes.txs] == [3] and up == p.UpToDate(3)


@pytest.mark.parametrize(
    "shapes, cursor, code",
    [
        ([p.Shape("nope")], 0, "unknown_table"),
        ([p.Shape("tasks", where={"title": ["x"]})], 0, "unsupported_shape"),  # not an indexed column
        ([p.Shape("tasks", where={"status": []})], 0, "bad_subscribe"),
        ([p.Shape("tasks", where={"status": [{"a": 1}]})], 0, "bad_subscribe"),
        ([], 0, "bad_subscribe"),
        ([p.Shape("tasks")], -1, "bad_subscribe"),
        ([p.Shape("tasks")], 1 << 63, "bad_subscribe"),
    ],
)
def test_bad_subscriptions(shapes, cursor, code):
    session = ready()
    session.receive(p.Subscribe(shapes=shapes, cursor=cursor))
    (error,) = sent(session.actions())
    assert error.code == code


def test_expired_token_is_noticed_on_the_next_message():
    clock = Clock()
    session = ready(expires_at_ms=clock.ms + 1000, clock=clock)
    session.receive(p.Ping(nonce=1))
    assert sent(session.actions()) == [p.Pong(nonce=1)]
    clock.ms += 1000
    session.receive(push((1, [1])))
    error, close = session.actions()
    assert error.message.code == "token_expired" and close.code == ss.CLOSE_POLICY_VIOLATION
    assert session.state is ss.State.CLOSED


def test_client_never_sends_server_messages():
    session = ready()
    session.receive(p.Ack(upto_seq=3))
    (error,) = sent(session.actions())
    assert error.code == "unexpected_message" and not error.fatal


def test_malformed_frames_get_an_error_and_the_session_goes_on():
    session = ready()
    session.receive_frame(b"\xc1\xc1")
    session.receive_frame(p.encode(p.Ping(nonce=3))[:-1] + b"\x00\x00")  # truncated/garbled
    session.receive_frame(b"\x81\xa4type\xa4nope")  # a message type nobody knows
    codes = [m.code for m in sent(session.actions())]
    assert codes[0] == "bad_frame" and codes[-1] == "unknown_message"
    session.receive_frame(p.encode(p.Ping(nonce=4)))
    assert sent(session.actions()) == [p.Pong(nonce=4)]


def test_resolved_asks_the_driver_to_mark_records():
    session = ready()
    session.receive(p.Resolved(conflict_ids=["a", "b"]))
    assert session.actions() == [ss.Resolve(["a", "b"])]


def test_a_ping_behind_a_resolved_is_answered_once_it_is_recorded():
    """The client takes the Pong as proof its resolutions are recorded: a Pong
    sent while the records were still being marked (then lost with the
    connection) would make it forget resolutions the server never kept."""
    session = ready()
    session.receive(p.Resolved(conflict_ids=["a"]))
    session.receive(p.Ping(nonce=1))
    session.receive(p.Resolved(conflict_ids=["b"]))
    session.receive(p.Ping(nonce=2))
    assert sent(session.actions()) == []
    session.resolve_done(ok=True)
    assert sent(session.actions()) == []  # "b" is not recorded yet
    session.resolve_done(ok=True)
    assert sent(session.actions()) == [p.Pong(nonce=1), p.Pong(nonce=2)]
    session.receive(p.Ping(nonce=3))
    assert sent(session.actions()) == [p.Pong(nonce=3)]  # nothing pending: answered at once
    with pytest.raises(ProtocolError):
        session.resolve_done(ok=True)


def test_a_resolution_that_could_not_be_recorded_gets_an_error_and_no_pong():
    session = ready()
    session.receive(p.Resolved(conflict_ids=["a"]))
    session.receive(p.Ping(nonce=1))
    session.actions()
    session.resolve_done(ok=False)
    (error,) = sent(session.actions())
    assert isinstance(error, p.Error) and error.code == "unavailable" and not error.fatal
    assert session.state is ss.State.READY
    session.receive(p.Ping(nonce=2))
    assert sent(session.actions()) == [p.Pong(nonce=2)]


def test_drain_answers_the_merge_in_flight_and_starts_no_other():
    session = ready()
    session.receive(push((1, [1])))
    session.receive(push((2, [2])))
    session.actions()
    session.drain()
    session.receive(push((3, [3])))  # ignored: the server is closing
    session.merged(upto_seq=1)
    assert sent(session.actions()) == [p.Ack(upto_seq=1)]
    assert not session.busy


def test_repr_never_shows_the_token():
    session = ss.ServerSession(tables=TABLES)
    session.receive(p.Hello(token="very-secret-token", site=SITE))
    assert "very-secret-token" not in repr(session)
