"""Every envelope variant the format document lists reads the same."""

from __future__ import annotations

import json

import pytest

from syncstore.legacy.envelope import decode_envelope, read_source
from syncstore.legacy.errors import ExportFormatError

from .exports import make_environment, make_task

TASKS = [make_task(), make_task()]
ENVS = [make_environment()]


def _variants():
    wrapped_t = {"state": {"tasks": TASKS}, "version": 0}
    wrapped_e = {"state": {"environments": ENVS}, "version": 0}
    yield "strings", {"task-store": json.dumps(wrapped_t), "environments": json.dumps(wrapped_e)}
    yield "decoded objects", {"task-store": wrapped_t, "environments": wrapped_e}
    yield "no version", {"task-store": json.dumps({"state": {"tasks": TASKS}}), "environments": {"state": {"environments": ENVS}}}
    yield "no state wrapper", {"task-store": json.dumps({"tasks": TASKS}), "environments": {"environments": ENVS}}
    yield "bare arrays", {"task-store": json.dumps(TASKS), "environments": ENVS}
    yield "double-encoded strings", {"task-store": json.dumps(json.dumps(wrapped_t)), "environments": json.dumps(wrapped_e)}


@pytest.mark.parametrize("name,export", list(_variants()), ids=[n for n, _ in _variants()])
def test_every_variant_finds_the_same_items(name, export):
    env = decode_envelope(export)
    assert env.tasks == TASKS
    assert env.environments == ENVS
    assert env.problems == []
    assert env.ignored == []


def test_the_sample_has_eight_tasks_two_environments_and_two_ignored_keys(sample):
    env = decode_envelope(sample)
    assert len(env.tasks) == 8
    assert len(env.environments) == 2
    assert [i.key for i in env.ignored] == ["new-task-form-draft", "migration-status"]
    assert env.warnings == []


def test_other_keys_are_ignored_with_a_reason_and_never_fail():
    export = {
        "task-store": json.dumps({"state": {"tasks": TASKS, "selectedTaskId": "x"}, "version": 0, "extra": 1}),
        "task-store-backup": "{not even json",
        "electric:offline-queue": "[]",
        "draft-123": {"title": "half"},
    }
    env = decode_envelope(export)
    reasons = {i.key: i.reason for i in env.ignored}
    assert set(reasons) == {
        "task-store.state.selectedTaskId",
        "task-store.extra",
        "task-store-backup",
        "electric:offline-queue",
        "draft-123",
    }
    assert "backup" in reasons["task-store-backup"]
    assert "queue" in reasons["electric:offline-queue"]
    assert env.tasks == TASKS
    assert env.environments == []


def test_an_unknown_version_is_read_with_a_warning():
    env = decode_envelope({"task-store": {"state": {"tasks": TASKS}, "version": 3}})
    assert env.tasks == TASKS
    assert any("version 3" in w for w in env.warnings)


@pytest.mark.parametrize(
    "value,words",
    [
        ("{broken", "not valid JSON"),
        ('"just a string"', "expected an object or a list"),
        ({"state": []}, "expected an object"),
        ({"state": {"items": []}}, "no 'tasks' list"),
        ({"tasks": {"a": 1}}, "expected a list"),
    ],
)
def test_an_unreadable_store_is_a_problem_not_a_crash(value, words):
    env = decode_envelope({"task-store": value, "environments": {"environments": ENVS}})
    assert len(env.problems) == 1
    assert env.problems[0].kind == "key" and env.problems[0].id == "task-store"
    assert words in env.problems[0].reason
    assert env.environments == ENVS


def test_an_export_without_stores_warns():
    env = decode_envelope({"something": "else"})
    assert env.tasks == [] and env.environments == []
    assert env.warnings


@pytest.mark.parametrize("content", [b"[1, 2]", b'"text"', b"not json at all"])
def test_a_file_that_is_not_an_export_is_refused(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(ExportFormatError):
        decode_envelope(read_source(str(path)).data)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ExportFormatError, match="cannot read"):
        read_source(str(tmp_path / "nope.json"))


def test_sources_name_their_origin_and_hash(sample_path, sample):
    from_file = read_source(sample_path)
    assert from_file.label == sample_path
    assert len(from_file.sha256) == 64
    from_data = read_source(sample)
    assert from_data.label == "<data>"
    assert from_data.data == sample
    from_bytes = read_source(open(sample_path, "rb").read())
    assert from_bytes.sha256 == from_file.sha256
