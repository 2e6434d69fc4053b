"""Columnar snapshot chunks in the server session alone (no I/O): a client that
reads Snapshot.columns gets the chunk's uniform rows column by column, one that
does not gets every row as a RowChange, by id, the same cells either way."""

from __future__ import annotations

from syncstore.core import protocol as p
from syncstore.core import server_session as ss

SITE, OTHER = b"s" * 16, b"o" * 16
COLUMNS = p.Columns(
    "tasks",
    ["title", "status"],
    ["r1", "r3", "r4"],
    [["one", "three", "four"], ["pending", None, "completed"]],
    [10, 30, 40],
    [SITE, OTHER],
    [0, 1, 0],
)
MIXED = p.RowChange("tasks", "r2", {"title": ("two", 21, SITE), "status": ("pending", 20, OTHER), "_deleted": (0, 20, OTHER)})


def ready() -> ss.ServerSession:
    session = ss.ServerSession(tables=("tasks",))
    session.receive(p.Hello(token="t", site=SITE))
    session.actions()
    session.accept(ss.Identity("acme", frozenset({"sync"}), None), acked_seq=0)
    session.actions()
    return session


def chunk_for(columnar: bool) -> p.Snapshot:
    s = ready()
    s.receive(p.Subscribe(shapes=[p.Shape("tasks")], snapshot=True, id="a", columnar=columnar))
    assert isinstance(s.actions()[0], ss.ReadSnapshot)
    s.snapshot_read(ss.SnapshotRows([MIXED], [], "r4", COLUMNS), position=5, exhausted=False)
    message = s.actions()[0].message
    assert isinstance(message, p.Snapshot) and message.resume == "0:r4"
    return p.decode(p.encode(message))


def test_columns_hold_the_same_cells_as_row_changes():
    rows = {r.id: r.cells for r in COLUMNS.row_changes()}
    assert rows["r3"] == {"title": ("three", 30, OTHER), "status": (None, 30, OTHER), "_deleted": (0, 30, OTHER)}
    assert sorted(rows) == ["r1", "r3", "r4"] and rows["r4"]["status"] == ("completed", 40, SITE)


def test_a_columnar_client_gets_columns_and_the_other_rows_apart():
    message = chunk_for(True)
    assert message.columns == COLUMNS and message.rows == [MIXED]


def test_a_client_that_reads_no_columns_gets_every_row_by_id():
    message = chunk_for(False)
    assert message.columns is None
    assert [r.id for r in message.rows] == ["r1", "r2", "r3", "r4"]
    assert {r.id: r for r in message.rows} == {r.id: r for r in [MIXED, *COLUMNS.row_changes()]}
