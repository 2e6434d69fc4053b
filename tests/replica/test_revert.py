"""Refused local writes undone (Replica.revert), cells written again (Replica.rewrite),
and the schema version a replica file's rows were written with."""

from __future__ import annotations

import pytest

import syncstore
from syncstore import schema
from syncstore.core import hlc as hlc_mod
from syncstore.core.merge import Cell
from syncstore.errors import ValidationError
from syncstore.replica import clocks
from syncstore.replica.store import DELETED, RevertRow

OTHER = b"\x7f" * 16  # the server's version of a cell was written by another replica


def server_row(store, row_id: str, *, newer: bool = False, **changes) -> dict[str, Cell]:
    """A whole row as a server holding ``changes`` over the row's current
    cells would send it: written long ago, or (``newer``) after what is here."""
    stamp = store.clock.tick() if newer else hlc_mod.from_ms(hlc_mod.wall_ms() - 60_000)
    cells = dict(store.cells("tasks", row_id))
    cells.update({name: Cell(value, stamp, OTHER) for name, value in changes.items()})
    return cells


def refused_clocks(store, *seqs: int) -> frozenset[tuple[int, bytes]]:
    return frozenset((c.hlc, store.site_id) for c in store.changes() if c.seq in seqs)


@pytest.fixture
def heard(store):
    found: list = []
    store.subscribe(None, found.extend)
    return found


def test_a_refused_insert_of_a_row_the_server_never_had_goes(store, heard):
    row_id = store.insert("tasks", {"title": "refused"})
    store.delete("tasks", row_id)  # a tombstone of it goes too
    keep = store.insert("tasks", {"title": "kept"})
    heard.clear()
    changed = store.revert([RevertRow("tasks", row_id, None, refused_clocks(store, 1, 2))])
    assert store.tombstone("tasks", row_id) is None and store.get("tasks", row_id) is None
    assert changed == [] and store.get("tasks", keep) is not None
    row_id = store.insert("tasks", {"title": "refused too"})
    (seq,) = [c.seq for c in store.changes() if c.id == row_id]
    heard.clear()
    changed = store.revert([RevertRow("tasks", row_id, None, refused_clocks(store, seq))])
    assert store.get("tasks", row_id) is None and store.tombstone("tasks", row_id) is None
    assert changed == heard == [syncstore.Change("tasks", row_id, "delete", (), "reverted")]


def test_refused_cells_take_the_servers_cells_and_later_writes_stay(store, heard):
    row_id = store.insert("tasks", {"title": "first"})
    server = server_row(store, row_id)  # the server holds the insert
    store.update("tasks", row_id, {"title": "refused", "status": "paused"}, touch=False)  # seq 2: refused
    store.update("tasks", row_id, {"status": "completed"}, touch=False)  # seq 3: a later write
    later = store.cells("tasks", row_id)["status"]
    heard.clear()
    (note,) = store.revert([RevertRow("tasks", row_id, server, refused_clocks(store, 2))])
    cells = store.cells("tasks", row_id)
    assert cells["title"] == server["title"]  # value and clock, as the server holds them
    assert cells["status"] == later
    assert note == syncstore.Change("tasks", row_id, "update", ("title",), "reverted") and heard == [note]
    # Again: nothing holds a refused clock any more, nothing changes.
    assert store.revert([RevertRow("tasks", row_id, server, refused_clocks(store, 2))]) == []


def test_newer_server_cells_merge_in_as_they_would_from_the_stream(store):
    row_id = store.insert("tasks", {"title": "first"})
    server = server_row(store, row_id)
    store.update("tasks", row_id, {"title": "refused"}, touch=False)
    newer = Cell("from elsewhere", hlc_mod.from_ms(hlc_mod.wall_ms() + 60_000), OTHER)
    server["description"] = newer
    store.revert([RevertRow("tasks", row_id, server, refused_clocks(store, 2))])
    assert store.cells("tasks", row_id)["description"] == newer
    assert store.clock.last >= newer.hlc  # later local writes sort after it


def test_a_refused_delete_brings_the_row_back_as_the_server_holds_it(store, heard):
    row_id = store.insert("tasks", {"title": "kept on the server"})
    server = server_row(store, row_id)
    store.delete("tasks", row_id)
    heard.clear()
    (note,) = store.revert([RevertRow("tasks", row_id, server, refused_clocks(store, 2))])
    assert store.tombstone("tasks", row_id) is None
    assert store.cells("tasks", row_id) == server
    assert note.op == "insert" and note.origin == "reverted"


def test_a_refused_write_to_a_row_the_server_deleted_leaves_it_deleted(store):
    row_id = store.insert("tasks", {"title": "t"})
    server = server_row(store, row_id, newer=True, **{DELETED: 1})  # deleted elsewhere, after the insert
    store.update("tasks", row_id, {"title": "refused"})
    store.revert([RevertRow("tasks", row_id, server, refused_clocks(store, 2))])
    assert store.get("tasks", row_id) is None and store.tombstone("tasks", row_id) == server[DELETED][1:]


def test_a_bad_server_cell_changes_nothing(store):
    row_id = store.insert("tasks", {"title": "t"})
    store.update("tasks", row_id, {"title": "refused"})
    before = store.cells("tasks", row_id)
    bad = server_row(store, row_id, title=12)
    with pytest.raises(ValidationError):
        store.revert([RevertRow("tasks", row_id, bad, refused_clocks(store, 2))])
    assert store.cells("tasks", row_id) == before


# --- writing cells again -----------------------------------------------------------------


def test_rewrite_stamps_cells_again_as_a_logged_edit(store, heard):
    row_id = store.insert("tasks", {"title": "t", "branch": "b"})
    before = store.cells("tasks", row_id)
    heard.clear()
    assert store.rewrite("tasks", row_id, ["branch"])
    cells = store.cells("tasks", row_id)
    assert cells["branch"].value == "b" and cells["branch"].hlc > before["branch"].hlc
    assert cells["title"] == before["title"]
    last = store.changes()[-1]
    assert last.values == {"branch": "b"} and last.seen == {"branch": tuple(before["branch"][1:])}
    assert heard == []  # no value changed
    assert store.rewrite("tasks", row_id)  # whole: an insert
    last = store.changes()[-1]
    assert last.seen is None and last.values[DELETED] == 0 and last.values["title"] == "t"
    assert {c.hlc for c in store.cells("tasks", row_id).values()} == {last.hlc}


def test_rewrite_of_a_deleted_row_writes_its_delete_again(store):
    row_id = store.insert("tasks", {"title": "t"})
    store.delete("tasks", row_id)
    assert not store.rewrite("tasks", row_id, ["title"])
    assert store.rewrite("tasks", row_id)
    last = store.changes()[-1]
    assert last.values == {DELETED: 1} and store.tombstone("tasks", row_id) == (last.hlc, store.site_id)
    assert not store.rewrite("tasks", "0190f6a4-0000-7000-8000-00000000dead")


# --- the schema version the rows were written with ---------------------------------------


def test_a_newer_library_marks_the_columns_it_adds_as_unwritten(replica_path, monkeypatch):
    with syncstore.open(replica_path) as store:
        assert store.meta_get("synced_schema") == schema.SCHEMA_VERSION
        row_id = store.insert("tasks", {"title": "t", "branch": "written before"})
    import msgspec

    version = schema.SCHEMA_VERSION + 1
    tasks = schema.TABLES["tasks"]
    columns = tuple(msgspec.structs.replace(c, since=version) if c.name == "branch" else c for c in tasks.columns)
    monkeypatch.setattr(schema, "TABLES", {**schema.TABLES, "tasks": msgspec.structs.replace(tasks, columns=columns)})
    monkeypatch.setattr(schema, "SCHEMA_VERSION", version)
    with syncstore.open(replica_path) as store:
        cells = store.cells("tasks", row_id)
        assert cells["branch"] == Cell("", *clocks.ZERO)  # the default, written by nobody
        assert cells["title"].value == "t" and cells["title"].hlc > 0
        assert store.meta_get("synced_schema") == version
    monkeypatch.undo()
    with syncstore.open(replica_path) as store:  # an older library never lowers it
        assert store.meta_get("synced_schema") == version


def test_a_new_replica_marks_nothing(replica_path, monkeypatch):
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    with syncstore.open(replica_path) as store:
        assert store.meta_get("synced_schema") == schema.SCHEMA_VERSION
