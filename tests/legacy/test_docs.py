"""The migration guide stays true to the code: every option, status and field."""

from __future__ import annotations

import pathlib
import re

from syncstore.cli.main import cli
from syncstore.legacy.mapping import ENVIRONMENT_COLUMNS, TASK_COLUMNS, TOKEN_FIELD
from syncstore.legacy.validate import STATUS_MAP

GUIDE = pathlib.Path(__file__).parents[2] / "docs" / "migrating-from-localstorage.md"


def _text() -> str:
    return GUIDE.read_text()


def test_every_command_and_option_is_documented():
    text = _text()
    for name, command in cli.commands["import"].commands.items():
        assert f"syncstore --db agent.db import {name}" in text, name
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert f"`{opt}`" in text, (name, opt)


def test_the_status_table_is_the_mapping():
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([a-z_]+)` \|$", _text(), flags=re.M))
    assert rows == STATUS_MAP


def test_every_legacy_field_has_a_row():
    text = _text()
    for legacy, column in {**TASK_COLUMNS, **ENVIRONMENT_COLUMNS}.items():
        assert re.search(rf"^\| `{legacy}` \| `?[a-z_.]*{column}`? \|", text, flags=re.M), legacy
    for legacy in ("id", "status", "messages", TOKEN_FIELD):
        assert f"| `{legacy}` |" in text, legacy
