"""``syncstore workflows ...`` and ``syncstore debug ...`` through click's CliRunner."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from syncstore.cli.main import cli

MODULE = os.path.join(os.path.dirname(__file__), "cli_steps.py")


@pytest.fixture
def run(replica_path):
    runner = CliRunner()

    def invoke(*args, ok=True):
        result = runner.invoke(cli, ["--db", replica_path, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def started(result) -> str:
    return result.output.split()[0]


def test_start_signal_show_and_list(run):
    waiting = run("workflows", "start", "cli_review", "--module", MODULE, "--input", '{"n": 21}')
    execution = started(waiting)
    assert "waiting (for signal 'approval')" in waiting.output
    assert execution in run("workflows", "list").output
    listed = json.loads(run("workflows", "list", "--status", "waiting", "--json").output)
    assert [e["id"] for e in listed] == [execution]
    definitions = json.loads(run("workflows", "list", "--definitions", "--json").output)
    assert [(d["name"], d["version"]) for d in definitions] == [("cli_review", 1)]

    done = run("workflows", "signal", execution, "approval", "--data", '{"by": "cli"}', "--module", MODULE)
    assert done.output.strip() == f"{execution} completed"
    shown = json.loads(run("workflows", "show", execution, "--json").output)
    assert shown["execution"]["output"]["cli_describe"] == "doubled to 42"
    assert [s["status"] for s in shown["steps"]] == ["completed", "completed", "completed", "completed"]
    assert "cli_describe" in run("workflows", "show", execution).output
    assert '"kind":"wait_for_signal"' in run("workflows", "show", "cli_review").output


def test_start_without_the_code_leaves_it_pending_for_recover(run):
    # The definition must exist in the store first: register it by starting once with the module.
    run("workflows", "start", "cli_review", "--module", MODULE, "--no-run")
    pending = started(run("workflows", "start", "cli_review"))
    assert json.loads(run("workflows", "show", pending, "--json").output)["execution"]["status"] == "pending"
    recovered = run("workflows", "recover", "--module", MODULE).output
    assert f"{pending} waiting" in recovered


def test_pause_resume_cancel(run):
    execution = started(run("workflows", "start", "cli_review", "--module", MODULE, "--no-run"))
    assert run("workflows", "pause", execution).output.strip() == f"{execution} paused"
    assert run("workflows", "resume", execution).output.strip() == f"{execution} pending"
    assert run("workflows", "resume", execution, "--module", MODULE).output.startswith(f"{execution} waiting")
    assert run("workflows", "cancel", execution).output.strip() == f"{execution} cancelled"
    refused = run("workflows", "pause", execution, ok=False)
    assert refused.exit_code == 1 and refused.output.startswith("error: cannot pause")


def test_debug_timeline_replay_state_diff_fork(run, tmp_path):
    first = started(run("workflows", "start", "cli_review", "--module", MODULE, "--input", '{"n": 2}'))
    run("workflows", "signal", first, "approval", "--module", MODULE)
    drawn = run("debug", "timeline", first).output
    for name in ("cli_double", "approval", "approved", "cli_describe"):
        assert name in drawn
    page = tmp_path / "t.html"
    assert run("debug", "timeline", first, "--html", str(page)).output.strip() == str(page)
    ET.parse(page)

    replayed = json.loads(run("debug", "replay", first, "--json").output)
    assert replayed["complete"] and replayed["deterministic"]
    assert "deterministic" in run("debug", "replay", first).output
    assert json.loads(run("debug", "state", first, "1").output) == {"cli_double": 4}

    forked = run("debug", "fork", first, "--from-step", "2", "--input", '{"n": 5}', "--module", MODULE)
    second = started(forked)
    assert "waiting" in forked.output
    run("workflows", "signal", second, "approval", "--reject", "--module", MODULE)
    diff = json.loads(run("debug", "diff", first, second, "--json").output)
    assert diff["first_divergence"]["id"] == "approval"
    assert "first divergence at step 'approval'" in run("debug", "diff", first, second).output


def test_define_from_a_json_file_and_clear_errors(run, tmp_path):
    path = tmp_path / "flow.json"
    path.write_text('{"steps": [{"kind": "step", "id": "double", "function": "cli_double"}], "output": "double"}')
    assert run("workflows", "define", "from_json", str(path)).output.startswith("from_json v1 ")
    done = run("workflows", "start", "from_json", "--module", MODULE, "--input", '{"n": 4}', "--json")
    assert json.loads(done.output)["output"] == 8
    path.write_text('{"steps": [{"kind": "step", "id": "double", "max_attempts": 2}]}')
    changed = run("workflows", "define", "from_json", str(path), ok=False)
    assert changed.exit_code == 1 and "already registered with a different definition" in changed.output
    bad = run("workflows", "start", "from_json", "--input", "{nope", ok=False)
    assert bad.exit_code == 1 and "not valid JSON" in bad.output
    missing = run("workflows", "start", "no_such_flow", ok=False)
    assert missing.exit_code == 1 and "no workflow 'no_such_flow'" in missing.output


def test_every_workflow_and_debug_command_is_documented():
    from syncstore.cli.debug import debug
    from syncstore.cli.workflows import workflows

    docs = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "workflows.md"), encoding="utf-8").read()
    for group in (workflows, debug):
        for name in group.commands:
            assert f"`syncstore {group.name} {name}" in docs, f"syncstore {group.name} {name} is not in docs/workflows.md"
