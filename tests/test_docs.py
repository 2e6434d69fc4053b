"""Tests that keep the documentation honest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

import syncstore
from syncstore.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()
REPLICA_DOC = (ROOT / "docs" / "replica.md").read_text()


def all_commands(command=cli, path=()):
    if path:
        yield " ".join(path)
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from all_commands(sub, (*path, name))


@pytest.mark.parametrize("command", sorted(all_commands()))
def test_every_command_is_in_the_cli_doc(command):
    heading = f"### syncstore {command}\n"
    assert heading in CLI_DOC, f"docs/cli.md has no section for `syncstore {command}`: run .venv/bin/python docs/cli_reference.py"


def test_the_cli_doc_documents_no_command_that_does_not_exist():
    documented = set(re.findall(r"^### syncstore (.+)$", CLI_DOC, flags=re.M))
    assert documented <= set(all_commands())


def readme_commands() -> dict[str, str]:
    """The README's first code block: ``command   # role`` lines, by role."""
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", README, flags=re.S).group(1)
    commands = {}
    for line in block.strip().splitlines():
        command, _, role = line.partition("#")
        commands[role.strip().split(":")[0]] = command.strip()
    return commands


def test_readme_opens_with_set_up_main_job_and_tests():
    assert list(readme_commands()) == ["set-up", "main job", "tests"]


@pytest.mark.parametrize("role", ["set-up", "tests"])
def test_the_readme_commands_are_what_ci_runs(role):
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[role] in ci


def test_the_readme_main_job_runs():
    command = readme_commands()["main job"]
    assert command == ".venv/bin/python examples/offline_agent.py"
    script = command.split()[1]
    done = subprocess.run([sys.executable, str(ROOT / script)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "working offline" in done.stdout
    assert re.search(r"pending\s+\d+ changes logged", done.stdout)


def test_every_exported_name_exists():
    assert len(syncstore.__all__) == len(set(syncstore.__all__))
    for name in syncstore.__all__:
        assert getattr(syncstore, name, None) is not None, name
    for error in ("SyncstoreError", "ValidationError", "NotFoundError", "ReplicaError", "ReplicaLockedError",
                  "NotAReplicaError", "SchemaVersionError", "ClockDriftError"):
        assert error in syncstore.__all__ and issubclass(getattr(syncstore, error), syncstore.SyncstoreError)


def test_every_error_of_the_tree_is_exported():
    import syncstore.errors

    tree = [name for name, value in vars(syncstore.errors).items()
            if isinstance(value, type) and issubclass(value, syncstore.errors.SyncstoreError)]
    assert "TransitionError" in tree
    assert sorted(set(tree) - set(syncstore.__all__)) == []


def test_the_public_records_are_exported():
    import syncstore.memory
    import syncstore.workflows

    for name in ("Task", "TaskMessage", "Environment", "Execution", "Event", "Change"):
        assert name in syncstore.__all__
    # The record types each package lists as public.
    for name in ("MemoryRecord",):
        assert name in syncstore.memory.__all__ and name in syncstore.__all__
        assert getattr(syncstore, name) is getattr(syncstore.memory, name)
    for name in ("WorkflowRecord", "ExecutionRecord", "SnapshotRecord"):
        assert name in syncstore.workflows.__all__ and name in syncstore.__all__
        assert getattr(syncstore, name) is getattr(syncstore.workflows, name)


def test_importing_syncstore_leaves_the_memory_and_workflow_packages_for_later():
    code = "import sys, syncstore; print(sorted(m for m in ('syncstore.memory', 'syncstore.workflows') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_every_table_of_a_replica_is_in_the_replica_doc(replica_path):
    with syncstore.open(replica_path) as store:
        names = [row[0] for row in store.connection.execute("select name from sqlite_schema where type = 'table'")]
    missing = [name for name in names if f"`{name}`" not in REPLICA_DOC]
    assert not missing, f"docs/replica.md does not describe: {', '.join(missing)}"


def test_the_replica_doc_names_the_hidden_columns():
    for column in ("`_hlc`", "`_site`", "`_clocks`", "`_deleted`"):
        assert column in REPLICA_DOC
