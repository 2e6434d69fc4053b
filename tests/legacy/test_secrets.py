"""GitHub tokens: kept only in the local secret table (or dropped), never in a
synced column or the change log, never in a report."""

from __future__ import annotations

import json

import msgspec

from syncstore.legacy import find_in_synced_data, import_legacy
from syncstore.legacy import secrets
from syncstore.legacy.redact import MARK, Redactor, find_tokens
from syncstore.legacy.report import to_json

from .exports import SAMPLE_TOKENS, make_environment, make_export, make_task


def _assert_nowhere_synced(store, token):
    assert find_in_synced_data(store, token) == []
    # The scan's own view is checked against a plain reading of the change log.
    for change in store.changes():
        assert token not in json.dumps(change.values, default=lambda b: b.hex())


def test_sample_tokens_go_to_the_local_secret_table_only(store, sample_path):
    report = import_legacy(store, sample_path)
    for token in SAMPLE_TOKENS:
        _assert_nowhere_synced(store, token)
        assert token not in to_json(report)
    assert secrets.get(store, "environments", "8e81973e-0bec-47b0-b898-d190f9ebdacc", secrets.GITHUB_TOKEN) == SAMPLE_TOKENS[0]
    assert secrets.names(store, "environments", "6b4cb242-4a23-4596-a217-beaddbc496cb") == ["github_token"]
    # The secret table is not a synced table: no change log entry names it.
    assert {c.table for c in store.changes()} == {"tasks", "task_messages", "environments"}


def test_drop_secrets_keeps_no_token_anywhere(store, sample_path):
    report = import_legacy(store, sample_path, drop_secrets=True)
    assert (report.secrets.found, report.secrets.dropped, report.secrets.stored) == (2, 2, 0)
    assert store.query("select count(*) as n from local_secrets") == [{"n": 0}]
    for token in SAMPLE_TOKENS:
        _assert_nowhere_synced(store, token)
    assert any("dropped" in line for line in report.integrity.checked)


def test_the_scan_finds_a_string_in_any_synced_column_and_in_the_log(store):
    store.tasks.create("a title", description="contains needle-123 here")
    found = find_in_synced_data(store, "needle-123")
    assert {(f.table, f.column) for f in found} >= {("tasks", "description"), ("_ss_changes", "raw")}
    store.environments.create("env", config={"deep": ["needle-456"]})
    assert any(f.table == "environments" and f.column == "config" for f in find_in_synced_data(store, "needle-456"))


def test_a_token_inside_task_text_is_redacted(store):
    env = make_environment()
    token = env["githubToken"]
    stray = "ghp_" + "A1b2C3d4" * 5  # a token of no environment of this export
    task = make_task(
        title=f"clone with {token}",
        messages=[
            {"role": "assistant", "type": "local_shell_call_output", "data": {"type": "local_shell_call_output", "call_id": "c1", "output": json.dumps({"output": f"https://x-access-token:{token}@github.com/o/r\n{stray}"})}},
        ],
    )
    report = import_legacy(store, make_export([task], [env]))
    assert report.tasks.imported == 1
    for secret in (token, stray):
        _assert_nowhere_synced(store, secret)
        assert secret not in to_json(report)
    row = store.tasks.get(task["id"])
    assert row.title == f"clone with {MARK}"
    (message,) = store.messages.for_task(task["id"])
    assert message.content == f"https://x-access-token:{MARK}@github.com/o/r\n{MARK}"
    assert any("GitHub token(s) in its text replaced" in w for w in report.warnings)
    assert secrets.get(store, "environments", env["id"], secrets.GITHUB_TOKEN) == token


def test_a_token_in_a_skipped_item_is_not_printed(store):
    env = make_environment()
    bad = make_task(id=env["githubToken"])
    report = import_legacy(store, make_export([bad], [env]))
    assert report.tasks.skipped == 1
    assert env["githubToken"] not in to_json(report)


def test_a_changed_token_replaces_the_kept_one(store):
    env = make_environment()
    import_legacy(store, make_export([], [env]))
    rotated = dict(env, githubToken="gho_" + "9" * 36)
    report = import_legacy(store, make_export([], [rotated]))
    assert report.secrets.replaced == 1 and report.import_id is not None
    assert secrets.get(store, "environments", env["id"], secrets.GITHUB_TOKEN) == rotated["githubToken"]


def test_token_search_and_redaction_helpers():
    blob = msgspec.json.encode({"a": "x ghs_" + "z" * 30 + " y", "b": "github_pat_" + "Q_" * 15})
    found = find_tokens(blob, ["plain-known-token", "absent"])
    assert found == {"ghs_" + "z" * 30, "github_pat_" + "Q_" * 15}
    value, count = Redactor(["plain-known-token"]).value({"k plain-known-token": ["plain-known-token", 3, None]})
    assert value == {f"k {MARK}": [MARK, 3, None]} and count == 2
