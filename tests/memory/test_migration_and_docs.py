"""Migration 0004 (local-only memory bookkeeping) goes down and up; the docs name every command."""

from __future__ import annotations

import pathlib

import syncstore
from syncstore.cli.main import cli
from syncstore.replica import migrations

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "memory.md"


def _objects(conn) -> set[str]:
    return {name for (name,) in conn.execute("select name from sqlite_schema where name like '_ss_memory%'")}


def test_0004_down_removes_its_objects_and_up_restores_them(replica_path):
    with syncstore.open(replica_path) as store:
        store.memory.add("a", "before the rollback")
        conn = store.connection
        expected = {"_ss_memory_feed", "_ss_memory_feed_seq_idx", "_ss_memory_access",
                    "_ss_memory_feed_insert", "_ss_memory_feed_update", "_ss_memory_feed_delete"}
        assert expected <= _objects(conn)
        step = next(m for m in migrations.available() if m.version == 4)
        conn.execute(step.down)
        assert _objects(conn) == set()
        conn.execute(step.up)
        assert expected <= _objects(conn)
        # The feed starts empty after a fresh up; indexes load every row anyway.
        assert len(store.memory.search("rollback", k=5)) == 1


def test_memory_tables_stay_out_of_the_synced_schema():
    assert not any(name.startswith("_ss_") for name in syncstore.schema.TABLES)


def test_every_memory_command_is_documented():
    text = DOCS.read_text()
    commands = cli.commands["memory"].commands
    assert {"add", "search", "list", "consolidate", "expire", "sweep"} <= set(commands)
    for name in commands:
        assert f"syncstore memory {name}" in text, name
