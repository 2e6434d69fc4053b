"""The replica's compiled row checker agrees with the reference ``schema.validate_row``."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncstore import schema, storable
from syncstore.errors import ValidationError
from syncstore.replica import rowcheck

UUIDS = st.sampled_from(["01a215e4-e4c7-7804-a2c7-551014ae9339", "not-a-uuid", ""])
TEXTS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["pending", "high", "code", "user", "\x00", "caf\u00e9", "\ud800", "x" * (schema.MAX_TEXT + 1)]),
    # Around the limit of a column with an index (in bytes: ASCII, then two bytes a character).
    st.sampled_from(["x" * storable.MAX_INDEXED_TEXT, "x" * (storable.MAX_INDEXED_TEXT + 1), "\u00e9" * 501]),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 10, 11, -1, True, False, 0.5, 1.0]),
)
TIMES = st.one_of(
    st.sampled_from([
        "2025-07-17T10:00:00.000000Z", "2025-07-17T10:00:00Z", "2025-07-17T12:00:00+02:00",
        "2025-13-01T00:00:00.000000Z", "2025-07-17T10:00:00.000000", "0999-01-01T00:00:00.000000Z",
        "yesterday", "0001-01-01T00:00:00+05:00", "２０２５-07-17T10:00:00.000000Z",
    ]),
    st.datetimes(timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=-7))])),
    st.datetimes(),  # naive: refused
)
JSONS = st.one_of(
    st.sampled_from(["{}", "[]", '{"b":1,"a":2}', '{"a":2,"b":1}', "{not json", "null", '"s"', " {} "]),
    st.sampled_from(["[1e16,-0.0]", '{"a":1.5e300}', "[" * 129 + "]" * 129, "[" * 128 + "]" * 128, '["\\u0000"]']),
    st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=3),
    st.lists(st.integers(), max_size=3),
)
BLOBS = st.one_of(st.binary(max_size=8), st.just(bytearray(b"ab")), st.sampled_from([[0.5, 1.5], b"\x00\x00\x80?"]))
ANY_VALUE = st.one_of(st.none(), UUIDS, TEXTS, NUMBERS, TIMES, JSONS, BLOBS)


@st.composite
def rows(draw):
    tbl = draw(st.sampled_from(list(schema.TABLES.values())))
    names = draw(st.lists(st.sampled_from(tbl.column_names), unique=True))
    row = {}
    for name in names:
        kind = tbl.column(name).type
        typed = {"text": TEXTS, "integer": NUMBERS, "real": NUMBERS, "boolean": NUMBERS, "json": JSONS,
                 "timestamp": TIMES, "blob": BLOBS, "vector": BLOBS}[kind]
        if name == "id":
            typed = UUIDS
        row[name] = draw(st.one_of(typed, ANY_VALUE))
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        row[draw(st.sampled_from(["colour", "_hlc", "_deleted"]))] = 1
    return tbl, row


def outcome(fn, *args, **kwargs):
    try:
        return "ok", fn(*args, **kwargs)
    except ValidationError:
        return "invalid", None


@given(rows(), st.booleans())
def test_the_checker_agrees_with_validate_row(drawn, insert):
    tbl, row = drawn
    expected = outcome(schema.validate_row, tbl, row, insert=insert)
    got = outcome(rowcheck.checker(tbl).check, row, insert=insert)
    assert got[0] == expected[0], (row, expected, got)
    if got[0] == "ok":
        assert got[1] == expected[1]
        assert [type(v) for v in got[1].values()] == [type(expected[1][k]) for k in got[1]]
        if insert:
            assert list(got[1]) == list(tbl.column_names)  # every column, in table order


@given(rows())
def test_checking_twice_changes_nothing(drawn):
    tbl, row = drawn
    status, checked = outcome(rowcheck.checker(tbl).check, row, insert=False)
    if status == "ok":
        assert rowcheck.checker(tbl).check(checked, insert=False) == checked


def test_bad_values_name_the_field_and_the_problem():
    check = rowcheck.checker(schema.TABLES["tasks"]).check
    cases = [
        ({"title": 5}, "title", "expected text, got int"),
        ({"status": "done"}, "status", "'done' is not one of pending"),
        ({"metadata": "{oops"}, "metadata", "not valid JSON"),
        ({"created_at": "2025-07-17T10:00:00"}, "created_at", "timezone"),
        ({"is_archived": 2}, "is_archived", "expected a boolean"),
        ({"title": "a\x00b"}, "title", "NUL"),
        ({"title": "\ud800"}, "title", "surrogate"),
        ({"colour": "red"}, "colour", "unknown column"),
        ({"metadata": [1, 2]}, "metadata", "expected a JSON object"),
        ({"pull_request": '"url"'}, "pull_request", "expected a JSON object"),
        ({"metadata": {"a": "nul \x00 inside"}}, "metadata", "NUL"),
        ({"title": None}, "title", "is required and may not be null"),
    ]
    for values, field, problem in cases:
        with pytest.raises(ValidationError, match=problem) as caught:
            check(values, insert=False)
        assert caught.value.field == field and caught.value.table == "tasks"
    with pytest.raises(ValidationError, match="tasks.title: is required"):
        check({"id": "01a215e4-e4c7-7804-a2c7-551014ae9339"}, insert=True)
    with pytest.raises(ValidationError, match="mapping"):
        check([("title", "x")], insert=False)


def test_json_known_canonical_for_one_column_is_still_checked_for_another():
    any_json = rowcheck.checker(schema.TABLES["agent_executions"]).check
    objects_only = rowcheck.checker(schema.TABLES["tasks"]).check
    for text in ("[]", '"text"', "1"):
        assert any_json({"output": text}, insert=False) == {"output": text}
        assert any_json({"output": text}, insert=False) == {"output": text}  # now remembered as canonical
        with pytest.raises(ValidationError, match="expected a JSON object"):
            objects_only({"metadata": text}, insert=False)
