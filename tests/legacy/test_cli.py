"""``syncstore import legacy|rollback|list`` through click's CliRunner."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

import syncstore
from syncstore.cli.main import cli

from .exports import SAMPLE_TOKENS, make_export, make_task


def run(db, *args):
    result = CliRunner().invoke(cli, ["--db", db, *args], catch_exceptions=False)
    for token in SAMPLE_TOKENS:
        assert token not in result.output
    return result


def test_import_prints_the_report(replica_path, sample_path):
    result = run(replica_path, "import", "legacy", sample_path)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("import ")
    assert "messages: 11 imported, 0 already here, of 11; 3 shell calls paired with their output" in out
    assert "2 stored" in out and "never synced" in out
    for words in ("missing id", "SHIPPED", "updatedAt", "new-task-form-draft", "migration-status"):
        assert words in out
    assert "integrity check: ok" in out and "tasks: 5 of 5 present" in out
    assert "importing" not in out  # no progress bar when the output is not a terminal


def test_json_output_is_the_report_alone(replica_path, sample_path):
    result = run(replica_path, "import", "legacy", sample_path, "--json")
    report = json.loads(result.output)
    assert report["tasks"]["imported"] == 5 and report["integrity"]["ok"] is True
    assert [s["reason"] for s in report["skipped"]][0] == "missing id"
    again = json.loads(run(replica_path, "import", "legacy", sample_path, "--json").output)
    assert again["import_id"] is None and again["tasks"]["unchanged"] == 5


def test_a_second_run_says_there_is_nothing_to_import(replica_path, sample_path):
    run(replica_path, "import", "legacy", sample_path)
    result = run(replica_path, "import", "legacy", sample_path)
    assert result.output.startswith("nothing to import")


def test_a_dry_run_creates_no_replica_file(tmp_path, sample_path):
    db = str(tmp_path / "fresh.db")
    result = run(db, "import", "legacy", sample_path, "--dry-run")
    assert result.exit_code == 0
    assert result.output.startswith("dry run: nothing was written")
    assert "integrity check: not run (dry run)" in result.output
    assert not os.path.exists(db)


def test_a_dry_run_against_an_existing_replica_reads_it(replica_path, sample_path):
    run(replica_path, "import", "legacy", sample_path)
    report = json.loads(run(replica_path, "import", "legacy", sample_path, "--dry-run", "--json").output)
    assert report["dry_run"] and report["tasks"]["unchanged"] == 5


def test_strict_fails_with_the_reasons_and_imports_nothing(replica_path, sample_path):
    result = CliRunner().invoke(cli, ["--db", replica_path, "import", "legacy", sample_path, "--strict"])
    assert result.exit_code == 1
    assert "missing id" in result.output
    assert "error: --strict: 3 invalid items; nothing was imported" in result.output
    with syncstore.open(replica_path) as store:
        assert store.count("tasks") == 0


def test_drop_secrets(replica_path, sample_path):
    result = run(replica_path, "import", "legacy", sample_path, "--drop-secrets")
    assert "2 GitHub tokens dropped" in result.output
    with syncstore.open(replica_path) as store:
        assert store.query("select count(*) as n from local_secrets") == [{"n": 0}]


def test_list_and_rollback(replica_path, sample_path):
    report = json.loads(run(replica_path, "import", "legacy", sample_path, "--json").output)
    listed = run(replica_path, "import", "list")
    assert report["import_id"] in listed.output and "5 tasks, 2 environments, 11 messages" in listed.output
    undo = run(replica_path, "import", "rollback", report["import_id"])
    assert undo.exit_code == 0
    assert "removed 7 rows, restored 0, kept 0" in undo.output
    assert "11 messages stay" in undo.output
    assert "rolled back" in run(replica_path, "import", "list").output
    listed_json = json.loads(run(replica_path, "import", "list", "--json").output)
    assert listed_json[0]["rolled_back_at"] is not None


def test_rollback_json_names_kept_rows(replica_path, tmp_path):
    task = make_task()
    path = tmp_path / "export.json"
    path.write_text(json.dumps(make_export([task])))
    report = json.loads(run(replica_path, "import", "legacy", str(path), "--json").output)
    with syncstore.open(replica_path) as store:
        store.tasks.update(task["id"], title="mine")
    undo = json.loads(run(replica_path, "import", "rollback", report["import_id"], "--json").output)
    assert undo["kept"] == [{"table": "tasks", "id": task["id"], "reason": "edited since the import (title, updated_at)"}]


def test_errors_are_one_line_and_exit_1(replica_path, tmp_path):
    result = CliRunner().invoke(cli, ["--db", replica_path, "import", "rollback", "nope"])
    assert result.exit_code == 1 and result.output.startswith("error: legacy_imports: no row with id 'nope'")
    result = CliRunner().invoke(cli, ["--db", replica_path, "import", "legacy", str(tmp_path / "missing.json")])
    assert result.exit_code == 1 and "error: cannot read" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    result = CliRunner().invoke(cli, ["--db", replica_path, "import", "legacy", str(bad)])
    assert result.exit_code == 1 and "not a localStorage export" in result.output


def test_a_progress_bar_on_a_terminal_and_none_with_json(replica_path, tmp_path, sample_path, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich treats stderr as a terminal
    quiet = CliRunner().invoke(cli, ["--db", replica_path, "import", "legacy", sample_path, "--json"])
    assert "importing" not in quiet.output
    assert json.loads(quiet.stdout)["tasks"]["imported"] == 5
    shown = CliRunner().invoke(cli, ["--db", str(tmp_path / "other.db"), "import", "legacy", sample_path])
    assert "importing" in shown.stderr
    assert shown.stdout.startswith("import ")
