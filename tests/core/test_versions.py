"""Schema versions: what peers of an older version are sent and what they may send.

The process's schema is made the test-only "new" version (see
``tests/schema_versions.py``): ``tasks.status_message`` and the table
``workflows`` are one version newer than the rest.
"""

from __future__ import annotations

import pytest

from syncstore import schema
from syncstore.core import client_session as cs
from syncstore.core import protocol as p
from syncstore.core import server_session as ss
from syncstore.core import versions

from schema_versions import COLUMN, TABLE, use_new

TASKS, NEW_COLUMN = COLUMN
SITE = b"s" * 16
OTHER = b"o" * 16
ROW = "0190f6a4-0000-7000-8000-000000000001"


@pytest.fixture
def old(monkeypatch) -> int:
    return use_new(monkeypatch)


def task_cells(**extra):
    cells = {"title": ("t", 5, OTHER), "_deleted": (0, 5, OTHER)}
    cells.update({name: (value, 5, OTHER) for name, value in extra.items()})
    return cells


# --- the schema's versions -------------------------------------------------------------


def test_an_older_version_lacks_the_newer_tables_and_columns(old):
    then = schema.tables_at(old)
    assert TABLE not in then and NEW_COLUMN not in then[TASKS].column_names
    assert set(then) == set(schema.TABLES) - {TABLE}
    assert schema.tables_at(schema.SCHEMA_VERSION) is schema.TABLES
    assert set(schema.added_after(old)) == {TASKS, TABLE}
    assert [c.name for c in schema.added_after(old)[TASKS]] == [NEW_COLUMN]
    assert versions.describe(old) == f"{TASKS}.{NEW_COLUMN}, {TABLE}"


def test_a_peer_that_does_not_say_its_version_is_version_1():
    assert schema.peer_version(0) == 1 and schema.peer_version(3) == 3


def test_the_shipped_schema_is_consistent_and_a_required_newer_column_needs_a_default():
    schema._check_versions(schema.TABLES, schema.SCHEMA_VERSION)
    tasks = schema.TABLES[TASKS]
    bad = schema.Table(TASKS, (*tasks.columns, schema.Column("rank", "integer", required=True, since=2)))
    with pytest.raises(AssertionError):
        schema._check_versions({TASKS: bad}, 2)


# --- a server's answers narrowed for an older client ------------------------------------


def test_narrowing_leaves_out_newer_cells_rows_and_conflict_records(old):
    known = versions.known(old)
    assert versions.known(schema.SCHEMA_VERSION) is None
    task = p.RowChange(TASKS, ROW, task_cells(**{NEW_COLUMN: "new"}))
    only_new = p.RowChange(TASKS, ROW, {NEW_COLUMN: ("x", 6, OTHER)})
    flow = p.RowChange(TABLE, ROW, {"name": ("w", 5, OTHER)})
    record = p.ConflictRecord("c1", TASKS, ROW, NEW_COLUMN, "a", 6, OTHER, "b", 5, SITE, True)
    kept = p.ConflictRecord("c2", TASKS, ROW, "title", "a", 6, OTHER, "b", 5, SITE, True)
    tx = versions.narrow_tx(p.ServerTx(9, [task, only_new, flow], [record, kept]), known)
    assert tx == p.ServerTx(9, [p.RowChange(TASKS, ROW, task_cells())], [kept])
    plain = p.ServerTx(10, [p.RowChange(TASKS, ROW, task_cells())])
    assert versions.narrow_tx(plain, known) is plain  # nothing to leave out: no copy


def test_narrowing_columnar_chunks_drops_the_newer_columns(old):
    chunk = p.Columns(TASKS, ["title", NEW_COLUMN], [ROW], [["t"], ["n"]], [5], [OTHER], [0])
    assert versions.narrow_columns(chunk, versions.known(old)) == p.Columns(
        TASKS, ["title"], [ROW], [["t"]], [5], [OTHER], [0]
    )


def server(hello_schema: int) -> ss.ServerSession:
    s = ss.ServerSession(tables=schema.TABLES, now_ms=lambda: 1_000)
    s.receive(p.Hello(token="tok", site=SITE, synced_schema=hello_schema))
    s.actions()
    s.accept(ss.Identity("acme", frozenset({"sync"}), None), acked_seq=0)
    return s


def sent(actions):
    return [a.message for a in actions if isinstance(a, ss.Send)]


def test_the_server_says_its_version_and_sends_an_older_client_only_what_it_knows(old):
    s = server(old)
    (welcome,) = sent(s.actions())
    assert welcome.synced_schema == schema.SCHEMA_VERSION and s.client_schema == old
    s.receive(p.Subscribe(shapes=[p.Shape(TASKS)]))
    s.actions()
    s.log_read([(1, p.ServerTx(1, [p.RowChange(TASKS, ROW, task_cells(**{NEW_COLUMN: "n"}))]))], more=False)
    changes = sent(s.actions())[0]
    assert changes.txs[0].changes[0].cells == task_cells()
    s.receive(p.Fetch(id="f1", table=TASKS, ids=[ROW]))
    s.actions()
    s.rows_read("f1", [p.RowChange(TASKS, ROW, task_cells(**{NEW_COLUMN: "n"}))])
    assert sent(s.actions()) == [p.Rows(id="f1", rows=[p.RowChange(TASKS, ROW, task_cells())])]


def test_a_client_from_before_versions_is_served_as_version_1(old):
    s = server(0)
    assert s.client_schema == 1
    s.actions()  # the Welcome
    s.receive(p.Subscribe(shapes=[p.Shape(TABLE)]))  # a table it cannot know
    (error,) = sent(s.actions())
    assert error.code == "unknown_table" and not error.fatal
    s.receive(p.Fetch(id="f1", table=TABLE, ids=[ROW]))
    (error,) = sent(s.actions())
    assert error.code == "bad_fetch"


def test_live_deliveries_are_encoded_once_per_version(old):
    new, older = server(schema.SCHEMA_VERSION), server(old)
    for s in (new, older):
        s.actions()  # the Welcome
        s.receive(p.Subscribe(shapes=[p.Shape(TASKS)]))
        s.actions()
        s.log_read([], more=False, head=0)
        s.actions()
    delivery = ss.Delivery([(1, p.ServerTx(1, [p.RowChange(TASKS, ROW, task_cells(**{NEW_COLUMN: "n"}))]))])
    new.deliver(delivery)
    older.deliver(delivery)
    (full,), (narrow,) = [[a for a in s.actions() if isinstance(a, ss.SendEncoded)] for s in (new, older)]
    assert p.decode(full.frames[0]).txs[0].changes[0].cells == task_cells(**{NEW_COLUMN: "n"})
    assert p.decode(narrow.frames[0]).txs[0].changes[0].cells == task_cells()


# --- a client's pushes and shapes for an older server ---------------------------------------


def test_a_push_keeps_back_what_an_older_server_cannot_take(old):
    insert = p.LocalChange(1, TASKS, ROW, 7, {"id": ROW, "title": "t", NEW_COLUMN: "n", "_deleted": 0})
    update = p.LocalChange(2, TASKS, ROW, 8, {NEW_COLUMN: "m"}, {NEW_COLUMN: (7, SITE)})
    flow = p.LocalChange(3, TABLE, ROW, 9, {"id": ROW, "name": "w", "_deleted": 0})
    plain = p.LocalChange(4, TASKS, ROW, 10, {"title": "u"}, {"title": (7, SITE)})
    txs, held = versions.strip_push([p.LocalTx(1, [insert]), p.LocalTx(2, [update, flow]), p.LocalTx(3, [plain])],
                                    versions.known(old))
    assert txs == [
        p.LocalTx(1, [p.LocalChange(1, TASKS, ROW, 7, {"id": ROW, "title": "t", "_deleted": 0})]),
        p.LocalTx(3, [plain]),
    ]
    assert held == [
        p.LocalChange(1, TASKS, ROW, 7, {NEW_COLUMN: "n"}),
        p.LocalChange(2, TASKS, ROW, 8, {NEW_COLUMN: "m"}, {NEW_COLUMN: (7, SITE)}),
        flow,
    ]
    assert [versions.needed_version(c) for c in held] == [old + 1] * 3
    assert versions.needed_version(plain) <= old  # all it writes is known to the older server


def client() -> cs.ClientSession:
    s = cs.ClientSession(
        token="tok", site=SITE, tables=list(schema.TABLES),
        subscriptions=[cs.Subscription("live", [p.Shape(TASKS), p.Shape(TABLE)]), cs.Subscription("w", [p.Shape(TABLE)], snapshot=True)],
    )  # fmt: skip
    s.start()
    assert s.messages_to_send()[0].synced_schema == schema.SCHEMA_VERSION
    return s


def test_a_client_subscribes_and_fetches_only_what_an_older_server_knows(old):
    s = client()
    s.receive(p.Welcome(tenant="acme", acked_seq=0, synced_schema=old))
    (welcomed,) = [e for e in s.events_received() if isinstance(e, cs.Welcomed)]
    assert welcomed.server_schema == old
    assert s.messages_to_send() == [p.Subscribe(shapes=[p.Shape(TASKS)], id="live")]
    assert s.fetch(TABLE, [ROW]) == [] and not s.messages_to_send()
    assert s.fetch(TASKS, [ROW]) == ["f1"]


def test_a_shape_filtering_on_a_column_an_older_server_lacks_waits(old):
    shape = p.Shape(TASKS, where={NEW_COLUMN: ["x"]})
    assert not versions.knows_shape(versions.known(old), shape)
    assert versions.knows_shape(versions.known(old), p.Shape(TASKS, where={"status": ["pending"]}))
    assert versions.knows_shape(None, shape)
    s = cs.ClientSession(token="tok", site=SITE, tables=[TASKS], subscriptions=[cs.Subscription("f", [shape])])
    s.start()
    s.messages_to_send()
    s.receive(p.Welcome(tenant="acme", acked_seq=0, synced_schema=old))
    assert s.messages_to_send() == []  # nothing an older server would refuse, again and again
    assert s.settled  # and nothing to wait for
    s.push([p.LocalTx(1, [p.LocalChange(1, TASKS, ROW, 9, {"title": "t"})])])
    s.receive(p.Ack(upto_seq=1, log_seq=5))
    assert s.settled  # (no stream brings the entry back)


def test_a_client_of_the_servers_version_subscribes_to_everything(old):
    s = client()
    s.receive(p.Welcome(tenant="acme", acked_seq=0, synced_schema=schema.SCHEMA_VERSION))
    assert s.server_known is None and len(s.messages_to_send()) == 2


def test_changes_kept_back_count_as_acknowledged_after_the_pushes_before_them():
    s = cs.ClientSession(token="tok", site=SITE, tables=[TASKS])
    s.start()
    s.receive(p.Welcome(tenant="acme", acked_seq=0))
    s.messages_to_send(), s.events_received()
    s.skip(2)  # nothing in flight: acknowledged at once (nothing was merged)
    assert s.acked_seq == 2 and s.events_received() == [cs.Acked(2, [], 0)]
    s.push([p.LocalTx(3, [p.LocalChange(3, TASKS, ROW, 9, {"title": "t"})])], through=4)
    s.skip(6)  # behind a push in flight: it waits for that push's Ack
    assert s.acked_seq == 2 and s.pushed_seq == 6
    s.receive(p.Ack(upto_seq=3))
    assert s.acked_seq == 6 and s.settled is False  # (not subscribed up to date yet)
    assert s.events_received() == [cs.Acked(6, [], 3)]
    s.push([p.LocalTx(7, [p.LocalChange(7, TASKS, ROW, 10, {"title": "u"})])])
    s.receive(p.Ack(upto_seq=7))
    assert s.events_received() == [cs.Acked(7, [], None)] and not s.in_flight
