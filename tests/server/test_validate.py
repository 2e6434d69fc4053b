"""Pushed changes are checked against the schema before any SQL: each refusal names its cause."""

from __future__ import annotations

import pytest

from syncstore.core import protocol as p
from syncstore.core.hlc import pack
from syncstore.core.merge import DELETED

from syncstore_server.validate import Deferred, Refused, check_change, check_tx

NOW = 1_700_000_000_000
HLC = pack(NOW, 0)
ROW = "0190b9e4-5d3c-7000-8000-000000000001"


def change(values, *, table="tasks", row_id=ROW, hlc=HLC, seen=None) -> p.LocalChange:
    return p.LocalChange(1, table, row_id, hlc, values, seen)


def check(c: p.LocalChange, drift: int = 60_000):
    return check_change(c, now_ms=NOW, max_drift_ms=drift)


def refused(c: p.LocalChange, drift: int = 60_000) -> Refused:
    with pytest.raises(Refused) as caught:
        check(c, drift)
    return caught.value


def test_an_insert_comes_out_canonical():
    checked = check(
        change(
            {"id": ROW, "title": "t", "is_archived": True, "metadata": '{ "b": 1, "a": [1, 2] }',
             "created_at": "2025-07-17T12:00:00+02:00", DELETED: 0}
        )
    )  # fmt: skip
    assert checked.values == {
        "title": "t",
        "is_archived": 1,
        "metadata": '{"a":[1,2],"b":1}',
        "created_at": "2025-07-17T10:00:00.000000Z",
        DELETED: 0,
    }
    assert "id" not in checked.values


@pytest.mark.parametrize(
    "c, code, words",
    [
        (change({"title": "x"}, table="secrets"), "unknown_table", "secrets"),
        (change({"tenant": "other"}), "unknown_column", "tenant"),
        (change({"title": 12}), "bad_value", "expected text"),
        (change({"status": "nonsense"}), "bad_value", "not one of"),
        (change({"importance": 11}, table="agent_memory"), "bad_value", "maximum"),
        (change({"metadata": "{not json"}), "bad_value", "JSON"),
        (change({"metadata": '{"a": "\\u0000"}'}), "bad_value", "u0000"),
        (change({"title": None}, seen={}), "bad_value", "required"),
        (change({DELETED: 2}), "bad_value", DELETED),
        (change({"title": "x"}, row_id="not-a-uuid"), "bad_id", "UUID"),
        (change({"id": "0190b9e4-5d3c-7000-8000-000000000002", "title": "x"}), "bad_id", "id column"),
        (change({}), "empty_change", "at least one column"),
        (change({"title": "x"}, hlc=0), "bad_clock", "out of range"),
        (change({"title": "x"}, seen={"nope": (1, b"s")}), "unknown_column", "nope"),
        (change({"id": ROW, DELETED: 0}), "bad_value", "must give title"),
        (change({"content": "edited"}, table="task_messages", seen={}), "append_only", "append-only"),
    ],
)
def test_refusals_name_their_cause(c, code, words):
    refusal = refused(c)
    assert refusal.code == code
    assert words in refusal.message


def test_a_clock_too_far_ahead_is_deferred_not_refused_for_good():
    ahead = pack(NOW + 61_000, 0)
    refusal = refused(change({"title": "x"}, hlc=ahead))
    assert isinstance(refusal, Deferred) and refusal.retry_after_ms == 1_000
    assert refusal.code == "clock_drift" and "61000 ms ahead of the server's clock" in refusal.message
    assert check(change({"title": "x"}, hlc=pack(NOW + 59_000, 0))).hlc == pack(NOW + 59_000, 0)


def test_a_transaction_is_refused_whole_for_one_bad_change():
    tx = p.LocalTx(1, [change({"title": "ok"}), change({"title": 5})])
    with pytest.raises(Refused):
        check_tx(tx, now_ms=NOW)


def test_a_transaction_over_the_size_cap_is_refused():
    tx = p.LocalTx(1, [change({"title": "ok"})] * 3)
    with pytest.raises(Refused) as caught:
        check_tx(tx, now_ms=NOW, max_tx_changes=2)
    assert caught.value.code == "tx_too_large"


def test_append_only_tables_take_inserts():
    values = {"id": ROW, "task_id": ROW, "position": 0, "role": "user", DELETED: 0}
    assert check(change(values, table="task_messages")).values["role"] == "user"


# --- a client of an older schema version ----------------------------------------------


@pytest.fixture
def branch_is_newer(monkeypatch) -> int:
    """tasks.branch (default "") made one version newer than the rest; returns the older version."""
    import msgspec

    from syncstore import schema

    version = schema.SCHEMA_VERSION + 1
    tasks = schema.TABLES["tasks"]
    columns = tuple(msgspec.structs.replace(c, since=version) if c.name == "branch" else c for c in tasks.columns)
    monkeypatch.setattr(schema, "TABLES", {**schema.TABLES, "tasks": msgspec.structs.replace(tasks, columns=columns)})
    monkeypatch.setattr(schema, "SCHEMA_VERSION", version)
    return version - 1


def test_an_older_clients_insert_takes_the_newer_columns_defaults(branch_is_newer):
    from syncstore import schema

    row = {"id": ROW, **{c.name: c.default for c in schema.table("tasks").columns[1:]}, "title": "t", DELETED: 0}
    del row["branch"]
    tx = p.LocalTx(1, [change(row)])
    (checked,) = check_tx(tx, now_ms=NOW, client_schema=branch_is_newer)
    assert checked.values["branch"] == "" and checked.values["title"] == "t"
    (same,) = check_tx(tx, now_ms=NOW)  # a client of this version: the row lacks a column it names
    assert "branch" not in same.values
    # Its updates never touch the newer column.
    (update,) = check_tx(p.LocalTx(2, [change({"title": "u"}, seen={"title": (HLC, b"s" * 16)})]), now_ms=NOW,
                         client_schema=branch_is_newer)  # fmt: skip
    assert update.values == {"title": "u"}
