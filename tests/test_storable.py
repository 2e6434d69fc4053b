"""One definition of a storable value: the replica refuses at the local write
every value the server could not store, with a clear ValidationError and
nothing written, and the server's check of a pushed change refuses the same."""

from __future__ import annotations

import pytest

from syncstore import storable
from syncstore.core import protocol as p
from syncstore.core.hlc import pack, wall_ms
from syncstore.core.merge import DELETED
from syncstore.errors import ValidationError

from syncstore_server.validate import Refused, check_change

ROW = "0190b9e4-5d3c-7000-8000-000000000001"


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# (table, column, value, words of the error)
UNSTORABLE = [
    ("agent_executions", "input", deep(975), "nested deeper"),
    ("agent_executions", "input", deep(storable.MAX_JSON_DEPTH + 1), "nested deeper"),
    ("agent_executions", "input", '{"k": "\\u0000"}', "NUL"),
    ("agent_executions", "input", '["' + "x" * storable.MAX_JSON_BYTES + '"]', "longer than"),
    ("agent_executions", "input", '["' + "\u00e9" * (storable.MAX_JSON_BYTES // 2) + '"]', "longer than"),
    ("agent_executions", "input", "1e400", "JSON"),
    ("tasks", "description", "x" * (storable.MAX_TEXT + 1), "longer than"),
    ("tasks", "description", "a\x00b", "NUL"),
    ("tasks", "description", "lone \ud800", "lone surrogate"),
    ("tasks", "repository", "r" * (storable.MAX_INDEXED_TEXT + 1), "indexed"),
    ("tasks", "repository", "\u00e9" * (storable.MAX_INDEXED_TEXT // 2 + 1), "indexed"),  # two bytes each
    ("agent_memory", "importance", 2**63, "64-bit"),
    ("agent_memory", "access_count", 2**64, "64-bit"),
    ("agent_executions", "cost", float("inf"), "finite"),
    ("agent_executions", "cost", float("nan"), "finite"),
    ("agent_memory", "embedding", [0.5] * (storable.MAX_VECTOR_DIMS + 1), "at most"),
    ("agent_memory", "embedding", [float("nan"), 1.0], "non-finite"),
    ("langgraph_checkpoint_blobs", "blob", b"x" * (storable.MAX_BLOB + 1), "longer than"),
]

REQUIRED = {
    "tasks": {"title": "t"},
    "agent_executions": {"agent_type": "a"},
    "agent_memory": {"agent_id": "a", "memory_type": "conversation", "content": "c"},
    "langgraph_checkpoint_blobs": {"thread_id": "t", "channel": "c", "version": "1"},
}


@pytest.mark.parametrize("table, column, value, words", UNSTORABLE, ids=lambda v: str(v)[:24])
def test_the_replica_refuses_at_the_local_write_what_the_server_cannot_store(store, table, column, value, words):
    with pytest.raises(ValidationError) as caught:
        store.insert(table, {**REQUIRED[table], column: value})
    assert words in str(caught.value) and column in str(caught.value)
    assert store.count(table) == 0 and store.changes() == []  # nothing written, nothing to push
    # An update is refused the same way.
    row_id = store.insert(table, REQUIRED[table])
    with pytest.raises(ValidationError):
        store.update(table, row_id, {column: value})
    assert len(store.changes()) == 1


@pytest.mark.parametrize("table, column, value, words", UNSTORABLE, ids=lambda v: str(v)[:24])
def test_the_server_refuses_the_same_values_in_a_push(table, column, value, words):
    now = wall_ms()
    if column == "embedding" and isinstance(value, list):
        value = _float32(value)
    change = p.LocalChange(1, table, ROW, pack(now, 0), {column: value}, {})
    with pytest.raises(Refused) as caught:
        check_change(change, now_ms=now, max_drift_ms=60_000)
    assert caught.value.code == "bad_value" and words in caught.value.message


def _float32(values: list[float]) -> bytes:
    import numpy as np

    return np.asarray(values, dtype=np.float32).tobytes()


def test_values_at_the_limits_are_stored(store):
    row_id = store.insert(
        "tasks",
        {
            "title": "t",
            "repository": "r" * storable.MAX_INDEXED_TEXT,
            "description": "x" * storable.MAX_TEXT,
            "metadata": {"deep": eval(deep(storable.MAX_JSON_DEPTH - 1))},
        },
    )
    assert len(store.get("tasks", row_id)["repository"]) == storable.MAX_INDEXED_TEXT


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("[1e16, -1e16, 1.2345e20, 1.7976931348623157e308]",
         "[10000000000000000,-10000000000000000,123450000000000000000,17976931348623157" + "0" * 292 + "]"),
        ("[-0.0, 0.0, -0.5]", "[0.0,0.0,-0.5]"),
        ("[1.5e-10, 1e15, 123.25]", "[1.5e-10,1000000000000000.0,123.25]"),
        ('{"1e16": "-0.0 and 1e16", "b": 1E+2}', '{"1e16":"-0.0 and 1e16","b":100.0}'),  # strings untouched
    ],
)
def test_json_numbers_are_kept_as_jsonb_gives_them_back(given, canonical):
    """PostgreSQL's jsonb prints a number with a positive exponent whole, and
    has no negative zero: the replica keeps what the server will hand back."""
    assert storable.json(given) == canonical
    assert storable.json(canonical) == canonical


def test_the_depth_count_skips_brackets_inside_strings():
    text = '["' + "[" * 500 + '", {"k": "]]]]"}]'
    assert not storable.too_deep(text)
    assert storable.json(text) == '["' + "[" * 500 + '",{"k":"]]]]"}]'
