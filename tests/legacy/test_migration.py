"""Replica migration 0002: the local-only tables of the legacy import."""

from __future__ import annotations

from importlib import resources

from syncstore import schema
from syncstore.replica import migrations

LOCAL_TABLES = {"local_secrets", "legacy_imports", "legacy_import_rows"}


def _tables(store) -> set[str]:
    return {r[0] for r in store.connection.execute("select name from sqlite_schema where type = 'table'")}


def test_a_new_replica_has_the_local_tables_and_they_are_not_synced(store):
    assert LOCAL_TABLES <= _tables(store)
    assert not LOCAL_TABLES & set(schema.TABLES)
    assert (2, "legacy_import") in [(v, n) for v, n, _ in migrations.applied(store.connection)]
    # No hidden clock columns: nothing in them is change-captured.
    for name in LOCAL_TABLES:
        columns = {r[1] for r in store.connection.execute(f"pragma table_info({name})")}
        assert not columns & {"_hlc", "_site", "_clocks"}


def test_the_down_migration_removes_them(store):
    folder = resources.files("syncstore.replica") / "migrations"
    down = (folder / "0002_legacy_import.down.sql").read_text()
    with store.transaction():
        store.connection.execute(down)
        assert not LOCAL_TABLES & _tables(store)
        assert "tasks" in _tables(store)
