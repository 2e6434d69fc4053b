"""The merge decided in memory: per-column last-write-wins and the conflict records it keeps."""

from __future__ import annotations

from syncstore.core import merge
from syncstore.core.merge import DELETED, Cell

from syncstore_server.merge_plan import Row, empty_row, plan_tx, unborn
from syncstore_server.validate import Checked

A, B = b"a" * 16, b"b" * 16
ROW = "0190b9e4-5d3c-7000-8000-000000000001"
KEY = ("tasks", ROW)


def checked(values, hlc, seen=None, seq=1) -> Checked:
    return Checked(seq, "tasks", ROW, hlc, values, seen)


def inserted(rows, hlc=10, site=A, **values):
    values = {"title": "first", "status": "pending", **values, DELETED: 0}
    return plan_tx([checked(values, hlc)], rows, site=site, origin_tx=1)


def test_an_insert_that_leaves_columns_out_writes_their_defaults_at_its_clock():
    """A row is created whole, as a replica's insert always writes it: a cell
    at the zero clock is no replica's to take, and would stop every bootstrap."""
    rows: dict = {}
    planned = inserted(rows)
    row = rows[KEY]
    assert not row.exists and row.dirty
    assert row.cells["title"] == Cell("first", 10, A)
    assert row.cells["priority"] == Cell("medium", 10, A)  # the default, written by the insert
    assert all(cell.hlc == 10 and cell.site == A for cell in row.cells.values())
    (change,) = planned.changes
    assert change.cells == dict(row.cells)  # logged whole: a live replica gets the same row
    assert planned.conflicts == [] and planned.tables == ["tasks"]


def test_a_transaction_that_would_make_a_row_live_without_a_required_column_is_unborn():
    rows: dict = {}
    assert unborn([checked({"status": "paused", DELETED: 0}, 10, seen={})], rows) is not None
    assert "title" in unborn([checked({"status": "paused", DELETED: 0}, 10, seen={})], rows)
    assert unborn([checked({"title": "t", DELETED: 0}, 10)], rows) is None
    # Made live by an earlier change of the same transaction, or already held: fine.
    born = [checked({"title": "t", DELETED: 0}, 10), checked({"status": "paused", DELETED: 0}, 11, seen={}, seq=2)]
    assert unborn(born, rows) is None
    inserted(rows)
    assert unborn([checked({"status": "paused", DELETED: 0}, 12, seen={})], rows) is None
    # A write to a row the server does not hold that does not make it live is dropped, not refused.
    assert unborn([checked({"status": "paused"}, 10, seen={})], {}) is None


def test_last_write_wins_per_column():
    rows: dict = {}
    inserted(rows)
    base = {"title": (10, A), "status": (10, A)}
    plan_tx([checked({"title": "by b"}, 20, seen={"title": base["title"]})], rows, site=B, origin_tx=2)
    later = plan_tx([checked({"status": "in_progress"}, 15, seen={"status": base["status"]})], rows, site=A, origin_tx=3)
    cells = rows[KEY].cells
    assert cells["title"] == Cell("by b", 20, B)
    assert cells["status"] == Cell("in_progress", 15, A)  # another column: both edits stay
    assert later.conflicts == []


def test_a_write_that_did_not_see_the_current_version_is_a_conflict_with_all_fields():
    rows: dict = {}
    inserted(rows)
    plan_tx([checked({"title": "a's"}, 30, seen={"title": (10, A)})], rows, site=A, origin_tx=2)
    # B edited the title having seen only the insert: concurrent with A's edit, and older.
    planned = plan_tx([checked({"title": "b's"}, 25, seen={"title": (10, A)})], rows, site=B, origin_tx=7)
    (conflict,) = planned.conflicts
    assert (conflict.table, conflict.row_id, conflict.column) == ("tasks", ROW, "title")
    assert conflict.winner == Cell("a's", 30, A)
    assert conflict.loser == Cell("b's", 25, B)
    assert conflict.incoming_won is False
    assert planned.changes == []  # it lost: nothing written, but the conflict is kept
    assert planned.tables == ["tasks"]
    assert rows[KEY].cells["title"] == Cell("a's", 30, A)


def test_a_concurrent_write_that_wins_is_recorded_too():
    rows: dict = {}
    inserted(rows)
    plan_tx([checked({"title": "a's"}, 30, seen={"title": (10, A)})], rows, site=A, origin_tx=2)
    planned = plan_tx([checked({"title": "b's"}, 40, seen={"title": (10, A)})], rows, site=B, origin_tx=3)
    (conflict,) = planned.conflicts
    assert conflict.incoming_won and conflict.winner == Cell("b's", 40, B) and conflict.loser == Cell("a's", 30, A)


def test_no_conflict_when_the_writer_saw_the_version_or_the_values_agree():
    rows: dict = {}
    inserted(rows)
    assert plan_tx([checked({"title": "x"}, 20, seen={"title": (10, A)})], rows, site=B, origin_tx=2).conflicts == []
    # not seen, but the same value: nothing to lose
    assert plan_tx([checked({"title": "x"}, 25, seen={"title": (10, A)})], rows, site=A, origin_tx=3).conflicts == []


def test_an_insert_meeting_a_different_existing_value_is_a_conflict():
    rows: dict = {}
    inserted(rows, title="from a")
    planned = inserted(rows, hlc=12, site=B, title="from b")
    assert [c.column for c in planned.conflicts] == ["title"]


def test_an_unwritten_cell_never_conflicts():
    rows = {KEY: Row(empty_row("tasks"), exists=True)}
    planned = plan_tx([checked({"priority": "high"}, 5, seen=None)], rows, site=B, origin_tx=1)
    assert planned.conflicts == [] and rows[KEY].cells["priority"] == Cell("high", 5, B)


def test_a_delete_is_a_tombstone_an_older_write_cannot_undo():
    rows: dict = {}
    inserted(rows)
    plan_tx([checked({DELETED: 1}, 50, seen={DELETED: (10, A)})], rows, site=A, origin_tx=2)
    late = plan_tx([checked({DELETED: 0, "title": "revived"}, 40)], rows, site=B, origin_tx=3)
    cells = rows[KEY].cells
    assert cells[DELETED] == Cell(1, 50, A)
    assert cells["title"] == Cell("revived", 40, B)  # a cell of a deleted row; the row stays deleted
    assert [c.column for c in late.conflicts] == [DELETED, "title"]


def test_merging_the_same_transaction_twice_changes_nothing_the_second_time():
    rows: dict = {}
    inserted(rows)
    edit = [checked({"title": "again"}, 20, seen={"title": (10, A)})]
    first = plan_tx(edit, rows, site=B, origin_tx=2)
    assert first.changes
    second = plan_tx(edit, rows, site=B, origin_tx=2)
    assert second.changes == [] and second.conflicts == []


def test_the_plan_agrees_with_merge_row():
    rows: dict = {}
    inserted(rows)
    current = dict(rows[KEY].cells)
    incoming = {"title": Cell("z", 11, B), "status": Cell("done?", 9, B)}
    expected, _ = merge.merge_row(current, incoming)
    plan_tx([checked({"title": "z"}, 11, seen={"title": (10, A)}), checked({"status": "done?"}, 9, seen={})],
            rows, site=B, origin_tx=2)  # fmt: skip
    assert rows[KEY].cells == expected


def test_two_changes_to_one_row_in_a_transaction_become_one_row_change():
    rows: dict = {}
    planned = plan_tx(
        [
            checked({"title": "t", DELETED: 0}, 10),
            checked({"status": "completed"}, 11, seen={"status": (0, b"")}),
        ],
        rows,
        site=A,
        origin_tx=1,
    )
    (change,) = planned.changes
    assert change.cells["status"] == Cell("completed", 11, A) and change.cells["title"] == Cell("t", 10, A)


def test_updated_at_merges_but_never_conflicts():
    rows: dict = {}
    inserted(rows, updated_at="2025-01-01T00:00:00.000000Z")
    stamp = {"title": (10, A), "status": (10, A), "updated_at": (10, A)}
    plan_tx(
        [checked({"title": "a's", "updated_at": "2025-01-02T00:00:00.000000Z"}, 30, seen=stamp)],
        rows, site=A, origin_tx=2,
    )
    # B edited another column, stamping updated_at too, without seeing A's edit.
    planned = plan_tx(
        [checked({"status": "paused", "updated_at": "2025-01-03T00:00:00.000000Z"}, 40, seen=stamp)],
        rows, site=B, origin_tx=3,
    )
    assert planned.conflicts == []  # different columns: nothing competed
    assert rows[KEY].cells["updated_at"] == Cell("2025-01-03T00:00:00.000000Z", 40, B)  # still last-write-wins
