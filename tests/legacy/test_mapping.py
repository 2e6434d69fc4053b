"""Legacy items as rows: every field kept, messages in order and paired."""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncstore import schema
from syncstore.core import hlc
from syncstore.errors import ValidationError
from syncstore.legacy.envelope import decode_envelope
from syncstore.legacy.mapping import map_environment, map_task, message_id, stamp_of

from .exports import make_environment, make_task

NOW_MS = 1_900_000_000_000  # well after every date below


def _sample_task(sample, task_id):
    return next(t for t in decode_envelope(sample).tasks if t.get("id") == task_id)


def test_a_sample_task_field_by_field(sample):
    item = _sample_task(sample, "9531985d-5d9d-49f8-9818-e811892f902b")
    mapped = map_task(item, now_ms=NOW_MS)
    row = mapped.row
    assert row["id"] == item["id"]
    assert row["title"] == "Add a README with build badges and a short usage section"
    assert row["description"] == ""
    assert row["status"] == "completed"
    assert row["branch"] == "main"
    assert row["session_id"] == "ibx4k2sandbox"
    assert row["repository"] == "octo/hello"
    assert row["mode"] == "code"
    assert row["is_archived"] == 0 and row["has_changes"] == 1
    assert row["status_message"] == "Running command bash -lc ls -la"
    assert json.loads(row["pull_request"]) == {
        "html_url": "https://github.com/octo/hello/pull/7",
        "number": 7,
        "branchName": "codex/add-readme",
        "commitSha": "abc123f",
    }
    assert json.loads(row["metadata"]) == {"legacy": {"status": "DONE"}}
    assert row["created_at"] == "2025-07-17T10:00:00.000000Z"
    assert row["updated_at"] == "2025-07-17T10:05:12.345000Z"
    assert row["priority"] == "medium" and row["user_id"] is None
    assert schema.validate_row(schema.table("tasks"), row, insert=True) == row  # canonical already


def test_unknown_fields_are_kept_in_metadata():
    item = make_task(status="PAUSED", model="o3", labels=["a"])
    meta = json.loads(map_task(item, now_ms=NOW_MS).row["metadata"])
    assert meta == {"legacy": {"status": "PAUSED", "extra": {"model": "o3", "labels": ["a"]}}}


def test_long_titles_are_kept_whole():
    title = "Please " + "do the thing " * 2000
    assert map_task(make_task(title=title), now_ms=NOW_MS).row["title"] == title


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"isArchived": "yes"}, "isArchived: expected a boolean"),
        ({"mode": "plan"}, "mode: 'plan' is not one of code, ask"),
        ({"sessionId": 12}, "sessionId: expected text"),
    ],
)
def test_a_wrongly_typed_field_is_named_by_its_legacy_name(fields, words):
    with pytest.raises(ValidationError, match=words):
        map_task(make_task(**fields), now_ms=NOW_MS)


def test_sample_messages_in_order_with_shell_calls_paired(sample):
    item = _sample_task(sample, "9531985d-5d9d-49f8-9818-e811892f902b")
    mapped = map_task(item, now_ms=NOW_MS)
    rows = mapped.messages
    assert [r["position"] for r in rows] == [0, 1, 2, 3, 4]
    assert [(r["role"], r["type"]) for r in rows] == [
        ("assistant", "local_shell_call"),
        ("assistant", "local_shell_call_output"),
        ("assistant", "message"),
        ("user", "message"),
        ("assistant", "message"),
    ]
    assert [r["content"] for r in rows] == [
        "bash -lc 'ls -la'",
        "README.md\nsrc\n",
        "I added README.md with badges.",
        "also add a license",
        "Added an MIT LICENSE.",
    ]
    data = [json.loads(r["data"]) for r in rows]
    for row, d, legacy in zip(rows, data, item["messages"]):
        assert d["legacy"] == legacy  # the message exactly as it was
        assert row["task_id"] == item["id"] and row["created_at"] is None
    assert data[0]["call_id"] == data[1]["call_id"] == "call_a1"
    assert data[0]["command"] == ["bash", "-lc", "ls -la"]
    assert data[0]["output_message_id"] == rows[1]["id"]
    assert data[1]["call_message_id"] == rows[0]["id"]
    assert data[1]["exit_code"] == 0
    assert mapped.shell_pairs == 1 and mapped.duplicates == [] and mapped.notes == []


def test_raw_and_streamed_assistant_text(sample):
    item = _sample_task(sample, "36f675cc-81e7-4ef5-a8e2-5d940ed90475")
    (row,) = map_task(item, now_ms=NOW_MS).messages
    assert row["content"] == "The integration job waits on a service that never starts."
    assert json.loads(row["data"])["legacy"]["data"]["raw"] is True


def test_exit_codes_of_several_calls_pair_by_call_id(sample):
    item = _sample_task(sample, "6b0d549b-6f03-475a-9600-a35a099950d8")
    mapped = map_task(item, now_ms=NOW_MS)
    data = [json.loads(r["data"]) for r in mapped.messages]
    assert [d.get("exit_code") for d in data] == [None, 1, None, 0]
    assert data[0]["output_message_id"] == mapped.messages[1]["id"]
    assert data[2]["output_message_id"] == mapped.messages[3]["id"]
    assert mapped.shell_pairs == 2


def _call(call_id, command=("ls",)):
    return {"role": "assistant", "type": "local_shell_call", "data": {"type": "local_shell_call", "call_id": call_id, "action": {"type": "exec", "command": list(command)}}}


def _output(call_id, output):
    return {"role": "assistant", "type": "local_shell_call_output", "data": {"type": "local_shell_call_output", "call_id": call_id, "output": output}}


def test_outputs_pair_even_out_of_order_and_unpaired_ones_are_noted():
    messages = [
        _call("c1"),
        _call("c2"),
        _output("c2", json.dumps({"output": "two", "metadata": {"exit_code": 2}})),
        _output("c1", "plain text, not JSON"),
        _output("c9", json.dumps({"output": "orphan"})),
        _call("c3"),
    ]
    mapped = map_task(make_task(messages=messages), now_ms=NOW_MS)
    rows = mapped.messages
    data = [json.loads(r["data"]) for r in rows]
    assert data[0]["output_message_id"] == rows[3]["id"]
    assert data[1]["output_message_id"] == rows[2]["id"]
    assert rows[3]["content"] == "plain text, not JSON" and "exit_code" not in data[3]
    assert rows[2]["content"] == "two" and data[2]["exit_code"] == 2
    assert mapped.shell_pairs == 2
    assert len(mapped.notes) == 2
    assert any("'c3'" in n and "has no output" in n for n in mapped.notes)
    assert any("'c9'" in n and "has no call" in n for n in mapped.notes)


def test_exact_duplicate_assistant_messages_are_reported_and_marked():
    answer = {"role": "assistant", "type": "message", "data": {"type": "output_text", "text": "Done.", "annotations": []}}
    near = {"role": "assistant", "type": "message", "data": {"type": "output_text", "text": "Done.", "annotations": [], "streamId": "s2"}}
    prompt = {"role": "user", "type": "message", "data": {"text": "again"}}
    messages = [answer, prompt, dict(answer), near, prompt, _call("c1"), _call("c1")]
    mapped = map_task(make_task(messages=messages), now_ms=NOW_MS)
    assert [(d.position, d.duplicate_of) for d in mapped.duplicates] == [(2, 0), (6, 5)]
    rows = mapped.messages
    assert len(rows) == len(messages)  # duplicates are kept, only marked
    assert json.loads(rows[2]["data"])["duplicate_of"] == rows[0]["id"]
    assert "duplicate_of" not in json.loads(rows[3]["data"])  # differs by streamId
    assert "duplicate_of" not in json.loads(rows[4]["data"])  # a user message is never a duplicate
    assert json.loads(rows[5]["data"]).get("output_message_id") is None


def test_content_that_a_text_column_cannot_hold_is_fitted_and_the_original_kept():
    huge = "x" * (schema.MAX_TEXT + 10)
    messages = [
        {"role": "assistant", "type": "message", "data": {"text": "a\x00b"}},
        {"role": "assistant", "type": "message", "data": {"text": huge}},
    ]
    rows = map_task(make_task(messages=messages), now_ms=NOW_MS).messages
    assert rows[0]["content"] == "a\ufffdb"
    # PostgreSQL's jsonb holds no NUL either: replaced in data too, and said so.
    first = json.loads(rows[0]["data"])
    assert first["legacy"]["data"]["text"] == "a\ufffdb" and first["nul_replaced"] is True
    assert len(rows[1]["content"]) == schema.MAX_TEXT
    data = json.loads(rows[1]["data"])
    assert data["content_truncated"] is True and data["legacy"]["data"]["text"] == huge
    assert "nul_replaced" not in data
    table = schema.table("task_messages")
    for row in rows:
        assert schema.validate_row(table, row, insert=True) == row


def test_message_ids_are_stable_uuids_derived_from_task_and_position():
    item = make_task()
    first = map_task(item, now_ms=NOW_MS).messages
    again = map_task(json.loads(json.dumps(item)), now_ms=NOW_MS).messages
    assert [r["id"] for r in first] == [r["id"] for r in again]
    assert [r["id"] for r in first] == [message_id(item["id"], 0), message_id(item["id"], 1)]
    for row in first:
        parsed = uuid.UUID(row["id"])
        assert str(parsed) == row["id"] and parsed.version == 5
    other = map_task(make_task(messages=item["messages"]), now_ms=NOW_MS).messages
    assert not {r["id"] for r in first} & {r["id"] for r in other}


def test_stamps_are_the_updated_at_millisecond_and_never_in_the_future():
    stamp, future = stamp_of("2025-07-17T10:05:12.345Z", now_ms=NOW_MS)
    assert stamp == hlc.from_ms(1_752_746_712_345) and not future
    stamp, future = stamp_of("2025-07-17T12:05:12.345+02:00", now_ms=NOW_MS)
    assert stamp == hlc.from_ms(1_752_746_712_345)
    stamp, future = stamp_of("2031-01-01T00:00:00Z", now_ms=NOW_MS)
    assert future and stamp == hlc.from_ms(NOW_MS)


def test_an_environment_keeps_its_fields_and_hands_the_token_aside():
    item = make_environment(region="eu")
    mapped = map_environment(item, now_ms=NOW_MS)
    row = mapped.row
    assert (row["name"], row["github_organization"], row["github_repository"]) == ("App", "octo", "octo/app")
    assert json.loads(row["config"]) == {"legacy": {"extra": {"region": "eu"}}}
    assert row["updated_at"] == "2025-07-17T09:30:00.000000Z"
    assert mapped.token == item["githubToken"]
    assert item["githubToken"] not in msgspec.json.encode(row).decode()


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_data = _json | st.fixed_dictionaries(
    {},
    optional={
        "text": _json,
        "call_id": st.sampled_from(["c1", "c2"]) | _json,
        "output": _json | _json.map(json.dumps) | st.builds(lambda t, c: json.dumps({"output": t, "metadata": {"exit_code": c}}), _json, _json),
        "action": st.fixed_dictionaries({"command": _json | st.lists(st.text(), max_size=3)}),
    },
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(schema.MESSAGE_ROLES), "data": _data},
    optional={
        "type": st.sampled_from(["message", "local_shell_call", "local_shell_call_output", "reasoning"]),
        "extra": _json,
    },
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_message, max_size=6))
def test_any_message_list_maps_to_rows_the_schema_accepts_as_they_are(messages):
    # The bulk writer relies on this: message rows are canonical when mapped.
    table = schema.table("task_messages")
    rows = map_task(make_task(messages=messages), now_ms=NOW_MS).messages
    assert len(rows) == len(messages)
    for row in rows:
        assert schema.validate_row(table, row, insert=True) == row


def test_a_copy_is_matched_to_its_own_original_among_messages_alike():
    # Same text, different other fields: one fingerprint, several candidates.
    answer = {"role": "assistant", "type": "message", "data": {"type": "output_text", "text": "Done.", "annotations": []}}
    streamed = {"role": "assistant", "type": "message", "data": {"type": "output_text", "text": "Done.", "streamId": "s1"}}
    messages = [answer, streamed, json.loads(json.dumps(streamed)), json.loads(json.dumps(answer)), dict(streamed)]
    mapped = map_task(make_task(messages=messages), now_ms=NOW_MS)
    assert [(d.position, d.duplicate_of) for d in mapped.duplicates] == [(2, 1), (3, 0), (4, 1)]
    assert [json.loads(r["data"]).get("duplicate_of") for r in mapped.messages] == [
        None, None, message_id(mapped.row["id"], 1), message_id(mapped.row["id"], 0), message_id(mapped.row["id"], 1)
    ]
