"""The merge rule: greatest (hlc, site) wins; a total order, so merging is a semilattice."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncstore.core.merge import DELETED, Cell, is_concurrent, merge_cell, merge_row, wins

SITES = st.sampled_from([b"\x00" * 16, b"\x01" * 16, b"\xff" * 16])
VALUES = st.one_of(st.none(), st.integers(min_value=-3, max_value=3), st.text(max_size=3))
# Few distinct stamps and sites, so ties (including fully equal clocks) are common.
CELLS = st.builds(Cell, VALUES, st.integers(min_value=0, max_value=4), SITES)
MAYBE_CELLS = st.one_of(st.none(), CELLS)
ROWS = st.dictionaries(st.sampled_from(["title", "status", "priority", DELETED]), CELLS, max_size=4)

A = b"\x0a" * 16
B = b"\x0b" * 16


def strict(cell: Cell | None):
    """Compare cells exactly (1 == 1.0 == True in Python; not here)."""
    return None if cell is None else (type(cell.value), cell.value, cell.hlc, cell.site)


def strict_row(row):
    return {name: strict(cell) for name, cell in row.items()}


@given(MAYBE_CELLS, MAYBE_CELLS)
def test_merge_cell_is_commutative(a, b):
    assert strict(merge_cell(a, b)) == strict(merge_cell(b, a))


@given(MAYBE_CELLS, MAYBE_CELLS, MAYBE_CELLS)
def test_merge_cell_is_associative(a, b, c):
    assert strict(merge_cell(merge_cell(a, b), c)) == strict(merge_cell(a, merge_cell(b, c)))


@given(MAYBE_CELLS)
def test_merge_cell_is_idempotent(a):
    assert strict(merge_cell(a, a)) == strict(a)


@given(CELLS, CELLS)
def test_exactly_one_of_two_different_cells_wins(a, b):
    if strict(a) == strict(b):
        assert not wins(a, b) and not wins(b, a)
    else:
        assert wins(a, b) != wins(b, a)


@given(ROWS, ROWS)
def test_merge_row_is_commutative(a, b):
    assert strict_row(merge_row(a, b)[0]) == strict_row(merge_row(b, a)[0])


@given(ROWS, ROWS, ROWS)
def test_merge_row_is_associative(a, b, c):
    left = merge_row(merge_row(a, b)[0], c)[0]
    right = merge_row(a, merge_row(b, c)[0])[0]
    assert strict_row(left) == strict_row(right)


@given(ROWS)
def test_merge_row_is_idempotent(a):
    merged, changed = merge_row(a, a)
    assert strict_row(merged) == strict_row(a)
    assert changed == []


@given(st.lists(ROWS, max_size=6), st.randoms())
def test_any_delivery_order_gives_the_same_row(updates, rng):
    def fold(rows):
        state: dict = {}
        for row in rows:
            state = merge_row(state, row)[0]
        return strict_row(state)

    shuffled = list(updates)
    rng.shuffle(shuffled)
    # Duplicated delivery changes nothing either.
    assert fold(updates) == fold(shuffled + updates[:2])


@given(ROWS, ROWS)
def test_merge_row_reports_exactly_the_cells_that_changed(current, incoming):
    merged, changed = merge_row(current, incoming)
    expected = {name for name in merged if strict(merged[name]) != strict(current.get(name))}
    assert set(changed) == expected
    assert len(changed) == len(set(changed))


def test_greater_hlc_wins_whatever_the_site():
    assert wins(Cell("new", 2, A), Cell("old", 1, B))
    assert not wins(Cell("old", 1, B), Cell("new", 2, A))


def test_equal_hlc_is_decided_by_site():
    assert wins(Cell("x", 5, B), Cell("y", 5, A))
    assert not wins(Cell("y", 5, A), Cell("x", 5, B))


def test_anything_wins_over_no_value():
    assert wins(Cell(None, 0, b""), None)
    assert merge_cell(None, None) is None


def test_a_tombstone_is_not_undone_by_an_older_write():
    tombstone = {DELETED: Cell(1, 10, A)}
    late_old_insert = {DELETED: Cell(0, 5, B), "title": Cell("resurrected?", 5, B)}
    merged, _ = merge_row(tombstone, late_old_insert)
    assert merged[DELETED].value == 1


def test_a_newer_insert_brings_a_row_back():
    tombstone = {DELETED: Cell(1, 10, A)}
    newer_insert = {DELETED: Cell(0, 11, B), "title": Cell("back", 11, B)}
    merged, changed = merge_row(tombstone, newer_insert)
    assert merged[DELETED].value == 0
    assert set(changed) == {DELETED, "title"}


def test_is_concurrent():
    current = Cell("v", 7, A)
    assert not is_concurrent(None, None)  # nothing to compete with
    assert not is_concurrent(None, (7, A))
    assert not is_concurrent(current, (7, A))  # the writer saw exactly this version
    assert not is_concurrent(current, [7, A])  # clocks may arrive as lists from the wire
    assert is_concurrent(current, (6, A))  # saw an older version
    assert is_concurrent(current, (7, B))
    assert is_concurrent(current, None)  # saw no value, but one exists
