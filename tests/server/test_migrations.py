"""Server schema migrations: recorded, checked on start, reversible, matching the schema."""

from __future__ import annotations

import threading

import psycopg
import pytest

from syncstore import schema
from syncstore.errors import SchemaVersionError

from syncstore_server import migrate

PG_TYPES = {
    "text": "text",
    "integer": "bigint",
    "real": "double precision",
    "boolean": "boolean",
    "json": "jsonb",
    "timestamp": "timestamp with time zone",
    "blob": "bytea",
    "vector": "bytea",  # PostgreSQL 15 here has no pgvector; see test_embedded for vector
}


def columns(conn, table):
    return dict(
        conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'syncstore' AND table_name = %s",
            (table,),
        ).fetchall()
    )


def test_migrate_makes_every_synced_table_with_real_types_and_records_it(database_url):
    with psycopg.connect(database_url) as conn:
        applied = migrate.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in migrate.available()]
        for tbl in schema.TABLES.values():
            found = columns(conn, tbl.name)
            assert found["tenant"] == "text" and found["id"] == "text"
            for col in tbl.columns[1:]:
                assert found[col.name] == PG_TYPES[col.type], (tbl.name, col.name)
            assert {"_deleted", "_hlc", "_site", "_clocks"} <= set(found)
            key = conn.execute(
                "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i "
                "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = %s::regclass AND i.indisprimary",
                (f"syncstore.{tbl.name}",),
            ).fetchone()[0]
            assert key == ["tenant", "id"]
        history = migrate.history(conn)
        assert [(h.version, h.name) for h in history][:3] == [
            (1, "initial"), (2, "leaner_indexes"), (3, "shapes_compaction")
        ]
        assert [h.checksum for h in history] == [m.checksum for m in migrate.available()]
        assert migrate.migrate(conn) == []  # already there
        assert migrate.check(conn).current == migrate.available()[-1].version


def test_rollback_and_migrate_again(database_url):
    with psycopg.connect(database_url) as conn:
        migrate.migrate(conn)
        later = [m.version for m in migrate.available() if m.version > 1]
        assert [m.version for m in migrate.rollback(conn, target=1)] == later[::-1]
        key = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'change_log_pkey'"
        ).fetchone()[0]
        assert key == "PRIMARY KEY (seq)"  # as migration 1 made it
        assert conn.execute("SELECT to_regclass('syncstore.log_horizon')").fetchone()[0] is None
        assert [m.version for m in migrate.migrate(conn)] == later
        assert [m.version for m in migrate.rollback(conn, target=0)] == [*later[::-1], 1]
        assert conn.execute("SELECT to_regclass('syncstore.tasks')").fetchone()[0] is None
        assert migrate.status(conn).current == 0
        migrate.migrate(conn)
        assert conn.execute("SELECT to_regclass('syncstore.tasks')").fetchone()[0] is not None


def test_a_database_not_migrated_is_refused_on_start(database_url):
    with psycopg.connect(database_url) as conn:
        with pytest.raises(SchemaVersionError, match="syncstore server migrate"):
            migrate.check(conn)


def test_a_newer_or_altered_database_is_refused(database_url):
    with psycopg.connect(database_url) as conn:
        migrate.migrate(conn)
        conn.execute("UPDATE syncstore.schema_migrations SET checksum = 'edited' WHERE version = 1")
        conn.commit()
        with pytest.raises(SchemaVersionError, match="changed after they ran"):
            migrate.check(conn)
        conn.execute(
            "UPDATE syncstore.schema_migrations SET checksum = %s WHERE version = 1", (migrate.available()[0].checksum,)
        )
        conn.execute("INSERT INTO syncstore.schema_migrations (version, name, checksum) VALUES (99, 'future', 'x')")
        conn.commit()
        with pytest.raises(SchemaVersionError, match="newer than this server knows"):
            migrate.check(conn)


def test_instances_starting_together_apply_each_migration_once(database_url):
    errors: list[BaseException] = []

    def start():
        try:
            with psycopg.connect(database_url) as conn:
                migrate.migrate(conn)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(database_url) as conn:
        assert [h.version for h in migrate.history(conn)] == [m.version for m in migrate.available()]


def test_migration_numbers_may_skip_reserved_ones_but_not_repeat(tmp_path):
    for name in ("0001_a.up.sql", "0002_b.up.sql", "0009_c.up.sql", "0009_c.down.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    assert [(m.version, m.down is not None) for m in migrate.available(tmp_path)] == [(1, False), (2, False), (9, True)]
    (tmp_path / "0005_orphan.down.sql").write_text("SELECT 1;")  # a down file without its up file
    with pytest.raises(SchemaVersionError):
        migrate.available(tmp_path)


def test_the_shipped_migrations_apply_to_the_highest_version(database_url):
    shipped = migrate.available()
    with psycopg.connect(database_url) as conn:
        assert [m.version for m in migrate.migrate(conn)] == [m.version for m in shipped]
        state = migrate.check(conn)
    assert state.current == state.latest == shipped[-1].version
