"""Local schema migrations: history, forward on open, rollback, refusal of newer replicas,
and the migrated schema matching the one table definition in ``syncstore.schema``."""

from __future__ import annotations

import apsw
import pytest

import syncstore
from syncstore import schema
from syncstore.errors import SchemaVersionError
from syncstore.replica import migrations
from syncstore.replica.connection import connect
from syncstore.replica.migrations import Migration

HIDDEN = ("_hlc", "_site", "_clocks")
SQL_TYPES = {"text": "TEXT", "integer": "INTEGER", "real": "REAL", "boolean": "INTEGER",
             "json": "TEXT", "timestamp": "TEXT", "blob": "BLOB", "vector": "BLOB"}


def history(path):
    conn, _ = connect(path)
    try:
        return [(version, name) for version, name, _ in migrations.applied(conn)]
    finally:
        conn.close()


def test_a_new_replica_records_every_shipped_migration(replica_path):
    syncstore.open(replica_path).close()
    shipped = [(m.version, m.name) for m in migrations.available()]
    assert history(replica_path) == shipped
    assert shipped[0] == (1, "initial")
    assert migrations.LATEST == shipped[-1][0]


def test_history_records_when_each_step_ran(replica_path):
    syncstore.open(replica_path).close()
    conn, _ = connect(replica_path)
    for _, _, applied_at in migrations.applied(conn):
        schema.parse_timestamp(applied_at)  # a real UTC timestamp
    conn.close()


def test_reopening_applies_nothing_again(replica_path):
    syncstore.open(replica_path).close()
    conn, _ = connect(replica_path)
    assert migrations.migrate(conn, replica_path) == []
    conn.close()


def test_status_reports_the_schema_version(store):
    assert store.status()["schema_version"] == migrations.LATEST


# --- a longer history, run through the same code with migrations made here -------

BASE = Migration(1, "base", "CREATE TABLE notes (id TEXT PRIMARY KEY);", "DROP TABLE notes;")
ADD_TITLE = Migration(2, "title", "ALTER TABLE notes ADD COLUMN title TEXT;", "ALTER TABLE notes DROP COLUMN title;")
ADD_INDEX = Migration(5, "title_index", "CREATE INDEX notes_title_idx ON notes (title);", None)
BROKEN = Migration(6, "broken", "ALTER TABLE no_such_table ADD COLUMN x;", None)


@pytest.fixture
def raw(tmp_path):
    conn, _ = connect(str(tmp_path / "raw.db"))
    yield conn, str(tmp_path / "raw.db")
    conn.close()


def columns(conn, table):
    return [row[1] for row in conn.execute(f"pragma table_info({table})")]


def versions(conn):
    return [row[0] for row in migrations.applied(conn)]


def test_forward_migrations_apply_in_order_and_only_the_missing_ones(raw):
    conn, path = raw
    assert [m.version for m in migrations.migrate(conn, path, known=[BASE])] == [1]
    # A newer library knows more steps (given out of order: versions decide).
    applied = migrations.migrate(conn, path, known=[ADD_INDEX, BASE, ADD_TITLE])
    assert [m.version for m in applied] == [2, 5]
    assert versions(conn) == [1, 2, 5]
    assert columns(conn, "notes") == ["id", "title"]
    assert conn.execute("select 1 from sqlite_schema where name = 'notes_title_idx'").fetchone()


def test_a_failing_step_leaves_the_replica_as_it_was(raw):
    conn, path = raw
    migrations.migrate(conn, path, known=[BASE])
    with pytest.raises(SchemaVersionError, match="could not apply migration 6 'broken'"):
        migrations.migrate(conn, path, known=[BASE, ADD_TITLE, BROKEN])
    # Step 2 ran before the failure, in the same transaction: undone too.
    assert versions(conn) == [1]
    assert columns(conn, "notes") == ["id"]
    assert not conn.in_transaction


def test_rollback_undoes_only_the_last_step(raw):
    conn, path = raw
    known = [BASE, ADD_TITLE]
    migrations.migrate(conn, path, known=known)
    undone = migrations.rollback_last(conn, path, known=known)
    assert (undone.version, undone.name) == (2, "title")
    assert versions(conn) == [1]
    assert columns(conn, "notes") == ["id"]
    # Opening again (the library still knows step 2) applies it again.
    assert [m.version for m in migrations.migrate(conn, path, known=known)] == [2]
    assert columns(conn, "notes") == ["id", "title"]


def test_rollback_of_a_step_without_a_down_file_is_refused(raw):
    conn, path = raw
    known = [BASE, ADD_TITLE, ADD_INDEX]
    migrations.migrate(conn, path, known=known)
    with pytest.raises(SchemaVersionError, match="migration 5 'title_index' cannot be rolled back"):
        migrations.rollback_last(conn, path, known=known)
    assert versions(conn) == [1, 2, 5]


def test_rollback_with_nothing_applied_is_refused(raw):
    conn, path = raw
    with pytest.raises(SchemaVersionError, match="no migration to roll back"):
        migrations.rollback_last(conn, path, known=[BASE])


def test_a_history_naming_an_unknown_version_is_refused(raw):
    conn, path = raw
    migrations.migrate(conn, path, known=[BASE, ADD_TITLE])
    with pytest.raises(SchemaVersionError, match=r"newer syncstore \(migration 2 'title'"):
        migrations.migrate(conn, path, known=[BASE])
    with pytest.raises(SchemaVersionError, match="newer syncstore"):
        migrations.rollback_last(conn, path, known=[BASE])
    assert versions(conn) == [1, 2]


# --- the shipped migrations on a real replica ----------------------------------------


def test_the_shipped_last_migration_rolls_back_and_forward(replica_path):
    syncstore.open(replica_path).close()
    conn, _ = connect(replica_path)
    last = migrations.available()[-1]
    if last.down is None:  # irreversible by design: the refusal is the behaviour
        with pytest.raises(SchemaVersionError, match="cannot be rolled back"):
            migrations.rollback_last(conn, replica_path)
        return
    assert migrations.rollback_last(conn, replica_path).version == last.version
    assert versions(conn)[-1] != last.version
    conn.close()
    with syncstore.open(replica_path) as store:  # forward again on open
        assert store.status()["schema_version"] == last.version


def test_shipped_migrations_roll_back_as_far_as_they_allow_then_forward_again(replica_path):
    with syncstore.open(replica_path) as store:
        store.tasks.create("gone once the first migration is undone")
    conn, _ = connect(replica_path)
    while migrations.applied(conn):
        last = migrations.applied(conn)[-1][0]
        if next(m for m in migrations.available() if m.version == last).down is None:
            break
        migrations.rollback_last(conn, replica_path)
    if not migrations.applied(conn):
        left = {row[0] for row in conn.execute("select name from sqlite_schema where type = 'table'")}
        assert left == {"_ss_migrations"}
    conn.close()
    with syncstore.open(replica_path) as store:
        assert store.status()["schema_version"] == migrations.LATEST
        store.tasks.create("writes work after the round trip")


def test_a_replica_from_a_newer_library_is_refused_on_open(replica_path):
    syncstore.open(replica_path).close()
    conn, _ = connect(replica_path)
    conn.execute("insert into _ss_migrations values (9999, 'from_the_future', '2099-01-01T00:00:00.000000Z')")
    conn.close()
    with pytest.raises(SchemaVersionError, match="made by a newer syncstore.*9999 'from_the_future'.*upgrade"):
        syncstore.open(replica_path)
    with pytest.raises(SchemaVersionError, match="newer syncstore"):
        syncstore.open(replica_path, readonly=True)


def test_readonly_open_of_a_replica_that_needs_migrating_is_refused(replica_path):
    syncstore.open(replica_path).close()
    conn, _ = connect(replica_path)
    migrations.rollback_last(conn, replica_path)
    conn.close()
    with pytest.raises(SchemaVersionError, match="needs migration .* read-write"):
        syncstore.open(replica_path, readonly=True)


# --- the migrated schema is the schema module's definition --------------------------


def test_migrated_tables_have_exactly_the_schema_columns_plus_hidden_ones(store):
    conn = store.connection
    for name, tbl in schema.TABLES.items():
        info = list(conn.execute(f"pragma table_info({name})"))
        assert [row[1] for row in info] == [*tbl.column_names, *HIDDEN], name
        declared = {row[1]: row[2] for row in info}
        for col in tbl.columns:
            assert declared[col.name] == SQL_TYPES[col.type], (name, col.name)
        assert declared["_hlc"] == "INTEGER" and declared["_site"] == "BLOB" and declared["_clocks"] == "BLOB"
        primary = [row[1] for row in info if row[5]]
        assert primary == ["id"], name


def test_every_declared_index_exists(store):
    conn = store.connection
    for name, tbl in schema.TABLES.items():
        indexed = set()
        for index_name, *_ in conn.execute(
            "select name from sqlite_schema where type = 'index' and tbl_name = ?", (name,)
        ):
            first = conn.execute(f"pragma index_info({index_name})").fetchone()
            indexed.add(first[2])
        assert set(tbl.indexes) <= indexed, (name, set(tbl.indexes) - indexed)


def test_no_synced_table_exists_that_the_schema_does_not_define(store):
    conn = store.connection
    for (name,) in conn.execute("select name from sqlite_schema where type = 'table'"):
        hidden = {row[1] for row in conn.execute(f"pragma table_info({name})")} & set(HIDDEN)
        if hidden:  # a table with clock columns is a synced table
            assert name in schema.TABLES, name


def test_the_change_log_and_bookkeeping_tables_exist(store):
    conn = store.connection
    names = {row[0] for row in conn.execute("select name from sqlite_schema where type = 'table'")}
    assert {"_ss_changes", "_ss_tombstones", "_ss_clock", "_ss_meta", "_ss_migrations"} <= names
    with pytest.raises(apsw.ConstraintError):  # the clock is one row
        conn.execute("insert into _ss_clock values (2, 0, 0, 0)")
