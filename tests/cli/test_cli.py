"""The foundation's commands through click's CliRunner: output, --json, and errors as
one line with exit status 1."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import syncstore
from syncstore.cli.main import cli
from syncstore.replica import migrations

MISSING = "01a215e4-e4c7-7804-a2c7-00000000dead"


@pytest.fixture
def run(replica_path):
    runner = CliRunner()

    def invoke(*args, ok=True, env=None):
        result = runner.invoke(cli, ["--db", replica_path, *args], env=env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def one_line_error(result, *fragments):
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_version_and_help():
    runner = CliRunner()
    assert syncstore.__version__ in runner.invoke(cli, ["--version"]).output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("status", "doctor", "migrate", "tasks", "environments"):
        assert name in result.output


def test_tasks_add_list_show_update_delete(run, replica_path):
    task_id = run("tasks", "add", "Write the release notes", "--repository", "octo/app", "--priority", "high").output.strip()
    with syncstore.open(replica_path) as store:
        task = store.tasks.get(task_id)
        assert (task.title, task.repository, task.priority) == ("Write the release notes", "octo/app", "high")

    listed = run("tasks", "list").output
    assert task_id in listed and "Write the release notes" in listed  # the whole id, ready to copy

    run("tasks", "update", task_id, "--status", "in_progress", "--archived")
    shown = run("tasks", "show", task_id).output
    assert "in_progress" in shown and "is_archived" in shown

    assert run("tasks", "message", task_id, "first note", "--role", "assistant").output.strip()
    shown = run("tasks", "show", task_id).output
    assert "first note" in shown and "assistant" in shown

    assert run("tasks", "delete", task_id).output.strip() == f"deleted {task_id}"
    assert task_id not in run("tasks", "list").output


def test_tasks_json_output(run):
    added = json.loads(run("tasks", "add", "one", "--json").output)
    run("tasks", "add", "two", "--status", "completed")
    assert added["title"] == "one" and added["status"] == "pending" and added["created_at"].endswith("Z")

    listed = json.loads(run("tasks", "list", "--json").output)
    assert [t["title"] for t in listed] == ["two", "one"]  # newest first
    assert [t["title"] for t in json.loads(run("tasks", "list", "--status", "completed", "--json").output)] == ["two"]
    assert len(json.loads(run("tasks", "list", "--limit", "1", "--json").output)) == 1
    assert [t["title"] for t in json.loads(run("tasks", "list", "--limit", "1", "--offset", "1", "--json").output)] == ["one"]

    run("tasks", "message", added["id"], "hello")
    shown = json.loads(run("tasks", "show", added["id"], "--json").output)
    assert shown["task"]["id"] == added["id"]
    assert [(m["position"], m["role"], m["content"]) for m in shown["messages"]] == [(0, "user", "hello")]

    updated = json.loads(run("tasks", "update", added["id"], "--title", "renamed", "--json").output)
    assert updated["title"] == "renamed"


def test_environments_add_list_activate(run):
    first = run("environments", "add", "dev", "--github-repository", "octo/app").output.strip()
    second = json.loads(run("environments", "add", "staging", "--json").output)["id"]
    assert run("environments", "activate", first).output.strip() == f"active: dev ({first})"
    run("environments", "activate", second)
    listed = json.loads(run("environments", "list", "--json").output)
    assert {e["name"]: e["is_active"] for e in listed} == {"dev": False, "staging": True}
    table = run("environments", "list").output
    assert first in table and second in table and "octo/app" in table


def test_status_text_and_json(run, replica_path):
    run("tasks", "add", "a")
    text = run("status").output
    assert replica_path in text and "tasks" in text
    info = json.loads(run("status", "--json").output)
    assert info["rows"]["tasks"] == 1 and info["last_seq"] == 1 and info["changes_logged"] == 1
    assert info["schema_version"] == migrations.LATEST


def test_doctor_reports_versions_and_capabilities(run):
    report = json.loads(run("doctor", "--json").output)
    for key in ("syncstore", "python", "apsw", "sqlite", "sqlite_vec", "vector_search_sqlite_vec", "problems"):
        assert key in report
    assert report["syncstore"] == syncstore.__version__
    assert report["replica_schema"] == migrations.LATEST
    text = run("doctor").output
    assert "apsw" in text and "sqlite" in text


def test_migrate_and_rollback(run, replica_path):
    run("status")  # creates the replica
    assert run("migrate").output.strip() == "applied: none"
    last = migrations.available()[-1]
    assert run("migrate", "--rollback").output.strip() == f"rolled back migration {last.version} ({last.name})"
    assert json.loads(run("migrate", "--json").output) == {"applied": [{"version": last.version, "name": last.name}]}


def test_the_database_comes_from_the_environment(replica_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["tasks", "add", "via env"], env={"SYNCSTORE_DB": replica_path})
    assert result.exit_code == 0
    with syncstore.open(replica_path) as store:
        assert [t.title for t in store.tasks.list()] == ["via env"]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["tasks", "show", MISSING], ["tasks", MISSING]),
        (["tasks", "update", MISSING, "--title", "x"], ["no row with id"]),
        (["tasks", "update", "{id}"], ["nothing to update"]),
        (["tasks", "delete", MISSING], ["no row"]),
        (["tasks", "message", MISSING, "hi"], ["no row"]),
        (["tasks", "add", ""], ["tasks.title: must not be empty"]),
        (["environments", "activate", MISSING], ["environments", MISSING]),
        (["environments", "add", " "], ["environments.name: must not be empty"]),
    ],
)
def test_library_errors_are_one_line_and_exit_1(run, args, fragments):
    task_id = run("tasks", "add", "exists").output.strip()
    args = [a.replace("{id}", task_id) for a in args]
    one_line_error(run(*args, ok=False), *fragments)


def test_errors_about_the_file_itself_are_one_line(tmp_path):
    runner = CliRunner()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database\n" * 100)
    for args in (["status"], ["tasks", "list"], ["migrate"], ["migrate", "--rollback"]):
        result = runner.invoke(cli, ["--db", str(text_file), *args])
        one_line_error(result, "not a SQLite database")
    result = runner.invoke(cli, ["--db", str(tmp_path / "missing" / "dir.db"), "status"])
    one_line_error(result, "cannot open")


def test_bad_option_values_are_usage_errors(run):
    result = run("tasks", "add", "x", "--status", "someday", ok=False)
    assert result.exit_code == 2 and "someday" in result.output
    result = run("tasks", "list", "--limit", "-1", ok=False)
    assert result.exit_code == 2


def test_sync_status_says_once_what_waits_for_a_newer_server_and_what_is_not_yet_undone(run, replica_path, monkeypatch):
    from schema_versions import use_new

    from syncstore.core import protocol as p
    from syncstore.sync.state import SERVER_SCHEMA, SyncState

    old = use_new(monkeypatch)  # this library is a version newer than the server it met
    with syncstore.open(replica_path) as store:
        state = SyncState(store)
        row_id = store.insert("tasks", {"title": "t", "status_message": "new"})
        state.hold([p.LocalChange(1, "tasks", row_id, 1, {"status_message": "new"})])
        store.meta_set(SERVER_SCHEMA, old)
        state.acked(0, [p.Rejection(tx=1, code="bad_value", message="refused")])
    text = run("sync", "status").output
    assert f"1 local change kept here: the server knows schema version {old} and they need {old + 1}" in text
    assert "tasks.status_message, workflows" in text
    assert "1 rejected pushes not yet undone here" in text
    status = json.loads(run("sync", "status", "--json").output)
    assert status["held_changes"] == 1 and status["reverting"] == 1 and status["server_schema"] == old
