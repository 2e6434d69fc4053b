"""Rows written in PostgreSQL by plain SQL (migration 0004's triggers, the publisher
in syncstore_server.direct_writes): stamped, checked, queued, published into the log."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncstore import schema, storable
from syncstore.core import protocol as p
from syncstore.core import shapes
from syncstore.core.hlc import COUNTER_BITS, wall_ms
from syncstore.core.merge import DELETED, Cell

from syncstore_server import migrate
from syncstore_server.direct_writes import SQL_SITE, DirectWrites
from syncstore_server.store import open_store

from .conftest import drop_database, migrate_url, new_database
from .helpers import insert, new_id, site, stamp, update

pytestmark = pytest.mark.postgres

A = site(1)
T = "direct"


def sql(url: str, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
    """Run statements in one transaction, as a direct writer would."""
    with psycopg.connect(url) as conn:
        for statement in statements:
            if isinstance(statement, tuple):
                conn.execute(*statement)
            else:
                conn.execute(statement)


def publish(url: str, **options: Any) -> int:
    async def main() -> int:
        async with open_store(url) as store:
            return await DirectWrites(store, url, **options).publish()

    return asyncio.run(main())


def log_entries(url: str, tenant: str = T) -> list[tuple[p.ServerTx, bytes, list[shapes.RowKeys] | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT payload, origin_site, routing FROM syncstore.change_log WHERE tenant = %s ORDER BY seq", (tenant,)
        ).fetchall()
    return [(msgspec.msgpack.decode(payload, type=p.ServerTx), origin, shapes.decode_keys(routing)) for payload, origin, routing in rows]


def cells(url: str, row_id: str, table: str = "tasks", tenant: str = T) -> dict[str, Cell]:
    async def main():
        async with open_store(url) as store:
            return await store.cells(tenant, table, row_id)

    return asyncio.run(main())


def queued(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM syncstore.direct_writes").fetchone()[0]


@pytest.fixture(scope="module")
def shared():
    name, url = new_database()
    try:
        yield migrate_url(url)
    finally:
        drop_database(name)


# --- the clocks map, in SQL -------------------------------------------------------

clock_maps = st.dictionaries(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=40),
    st.tuples(st.integers(0, (1 << 63) - 1), st.sampled_from([b"", A, SQL_SITE, bytes(16)])),
    max_size=20,  # past 15 entries a map needs the 16-bit header
)


@given(clock_maps)
def test_the_clocks_map_reads_and_writes_in_sql_as_in_python(shared, clocks):
    blob = msgspec.msgpack.encode(clocks) if clocks else None
    with psycopg.connect(shared) as conn:
        decoded = conn.execute("SELECT col, hlc, site FROM syncstore._clocks_decode(%s)", (blob,)).fetchall()
        assert {col: (hlc, bytes(s)) for col, hlc, s in decoded} == clocks
        names, hlcs, sites = list(clocks), [c[0] for c in clocks.values()], [c[1] for c in clocks.values()]
        encoded = conn.execute(
            "SELECT syncstore._clocks_encode(%s::text[], %s::bigint[], %s::bytea[])", (names, hlcs, sites)
        ).fetchone()[0]
    if not clocks:
        assert encoded is None
    else:
        assert msgspec.msgpack.decode(encoded, type=dict[str, tuple[int, bytes]]) == clocks


def test_the_sql_site_is_the_one_python_knows(shared):
    with psycopg.connect(shared) as conn:
        assert bytes(conn.execute("SELECT syncstore.sql_site()").fetchone()[0]) == SQL_SITE
    assert len(SQL_SITE) == 16


# --- stamping and publishing ------------------------------------------------------


def test_direct_insert_update_and_delete_are_stamped_and_reach_the_log(migrated):
    row = new_id()
    before_ms = wall_ms()
    sql(migrated, ("INSERT INTO syncstore.tasks (tenant, id, title, metadata) VALUES (%s, %s, 'by sql', %s)",
                   (T, row, '{"b": 1.5, "a": [1, 2]}')))  # fmt: skip
    inserted = cells(migrated, row)
    first = inserted["title"].hlc
    assert first >> COUNTER_BITS >= before_ms
    assert all(c.hlc == first and c.site == SQL_SITE for c in inserted.values())
    # The schema's defaults, in canonical form, as a replica's insert would have them.
    assert inserted["status"].value == "pending" and inserted["is_archived"].value == 0
    assert inserted["metadata"].value == '{"a":[1,2],"b":1.5}'
    assert publish(migrated) == 1
    (tx, origin, keys), = log_entries(migrated)
    assert origin == SQL_SITE
    (change,) = tx.changes
    assert change.id == row and change.cells["title"] == ("by sql", first, SQL_SITE)
    assert set(change.cells) == {c.name for c in schema.TABLES["tasks"].columns[1:]} | {DELETED}
    assert keys == [shapes.RowKeys("tasks", row, {"status": "pending", "repository": "", "user_id": None,
                                                  "updated_at": inserted["updated_at"].value})]  # fmt: skip

    sql(migrated, ("UPDATE syncstore.tasks SET title = 'edited', status = 'completed' WHERE id = %s", (row,)))
    edited = cells(migrated, row)
    second = edited["title"].hlc
    assert second > first and edited["status"] == Cell("completed", second, SQL_SITE)
    assert edited["description"] == inserted["description"]  # untouched cells keep their clocks
    publish(migrated)
    tx = log_entries(migrated)[-1][0]
    assert tx.changes[0].cells == {"title": ("edited", second, SQL_SITE), "status": ("completed", second, SQL_SITE)}

    sql(migrated, ("DELETE FROM syncstore.tasks WHERE id = %s", (row,)))
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT _deleted FROM syncstore.tasks WHERE id = %s", (row,)).fetchone() == (True,)
    publish(migrated)
    tx = log_entries(migrated)[-1][0]
    (deleted,) = tx.changes[0].cells.items()
    assert deleted[0] == DELETED and deleted[1][0] == 1 and deleted[1][1] > second
    assert queued(migrated) == 0


def test_a_direct_write_wins_over_every_version_it_saw_even_one_stamped_ahead(migrated):
    row, ahead = new_id(), stamp(30_000 << COUNTER_BITS)  # a client 30 s ahead (within the drift cap)

    async def main():
        async with open_store(migrated) as store:
            await store.merge(T, A, [p.LocalTx(1, [insert(1, row, ahead, title="from a fast clock")])])

    asyncio.run(main())
    assert queued(migrated) == 0  # the merge is not a direct write
    sql(migrated, ("UPDATE syncstore.tasks SET title = 'fixed by hand' WHERE id = %s", (row,)))
    got = cells(migrated, row)
    assert got["title"].value == "fixed by hand" and got["title"].hlc > ahead
    # A client edit made before it saw the direct write loses to it, and is recorded.

    async def late():
        async with open_store(migrated) as store:
            await store.merge(T, A, [p.LocalTx(2, [update(2, row, ahead + 1, {"title": (ahead, A)}, title="late")])])

    asyncio.run(late())
    assert cells(migrated, row)["title"].value == "fixed by hand"
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM syncstore.conflicts WHERE tenant = %s", (T,)).fetchone()[0] == 1


def test_one_direct_transaction_is_one_log_entry_and_a_large_one_is_split(migrated):
    ids = [new_id() for _ in range(25)]
    sql(migrated, *[("INSERT INTO syncstore.tasks (tenant, id, title) VALUES (%s, %s, 'x')", (T, i)) for i in ids[:3]])
    sql(migrated, *[("INSERT INTO syncstore.tasks (tenant, id, title) VALUES (%s, %s, 'y')", (T, i)) for i in ids[3:]])
    sql(migrated, ("UPDATE syncstore.tasks SET title = 'again' WHERE id = %s", (ids[0],)),
        ("UPDATE syncstore.tasks SET status = 'paused' WHERE id = %s", (ids[0],)))  # fmt: skip
    publish(migrated, max_entry_rows=10)
    sizes = [len(tx.changes) for tx, _, _ in log_entries(migrated)]
    assert sizes == [3, 10, 10, 2, 1]
    last = log_entries(migrated)[-1][0].changes[0]
    assert set(last.cells) == {"title", "status"}  # two updates of one row in one transaction: one change


def test_a_direct_update_that_moves_a_row_between_shapes_says_where_it_was(migrated):
    row = new_id()
    sql(migrated, ("INSERT INTO syncstore.tasks (tenant, id, title, repository) VALUES (%s, %s, 't', 'acme/a')", (T, row)))
    sql(migrated, ("UPDATE syncstore.tasks SET repository = 'acme/b' WHERE id = %s", (row,)),
        ("UPDATE syncstore.tasks SET repository = 'acme/c', title = 'moved' WHERE id = %s", (row,)))  # fmt: skip
    sql(migrated, ("UPDATE syncstore.tasks SET title = 'stays' WHERE id = %s", (row,)))
    publish(migrated)
    (_, _, created), (_, _, moved), (_, _, stayed) = log_entries(migrated)
    assert created[0].before is None and created[0].after["repository"] == "acme/a"  # as the insert left it
    assert moved[0].before == {"repository": "acme/a"} and moved[0].after["repository"] == "acme/c"
    assert moved[0].full is not None and moved[0].full["title"][0] == "stays"  # sent whole where it arrives
    assert stayed[0].before == {} and stayed[0].full is None
    into_c = shapes.ShapeFilter("tasks", (("repository", frozenset({"acme/c"})),))
    assert shapes.match_row(into_c, moved[0], None) == shapes.Match(True, True)


def test_two_publishers_publish_each_direct_write_once(migrated):
    for _ in range(20):
        sql(migrated, ("INSERT INTO syncstore.tasks (tenant, id, title) VALUES (%s, %s, 'x')", (T, new_id())))

    async def main():
        async with open_store(migrated) as one, open_store(migrated) as two:
            first, second = DirectWrites(one, migrated, batch=3), DirectWrites(two, migrated, batch=3)
            while any(await asyncio.gather(first.publish(), second.publish())):
                pass

    asyncio.run(main())
    entries = log_entries(migrated)
    assert len(entries) == 20 and len({tx.changes[0].id for tx, _, _ in entries}) == 20
    assert queued(migrated) == 0


# --- what a direct writer may not do ---------------------------------------------------

REFUSED = [
    ("UPDATE syncstore.tasks SET status = 'nope' WHERE id = %(id)s", "tasks.status must be one of"),
    ("UPDATE syncstore.tasks SET title = NULL WHERE id = %(id)s", "tasks.title is required"),
    ("UPDATE syncstore.tasks SET _hlc = 1 WHERE id = %(id)s", "leave _hlc, _site and _clocks to the server"),
    ("UPDATE syncstore.tasks SET tenant = 'other' WHERE id = %(id)s", "tenant and id never change"),
    ("UPDATE syncstore.tasks SET metadata = '[1]' WHERE id = %(id)s", "tasks.metadata must be a JSON object"),
    ("UPDATE syncstore.tasks SET created_at = '0500-01-01 BC' WHERE id = %(id)s", "years 1 to 9999"),
    ("INSERT INTO syncstore.tasks (tenant, id, title) VALUES ('direct', 'not-a-uuid', 't')", "must be a UUID"),
    ("INSERT INTO syncstore.tasks (tenant, id, title, _hlc) VALUES ('direct', %(new)s, 't', 1)", "leave _hlc"),
    ("INSERT INTO syncstore.agent_memory (tenant, id, agent_id, memory_type, content, importance) "
     "VALUES ('direct', %(new)s, 'a', 'conversation', 'c', 11)", "agent_memory.importance is above the maximum 10"),
    ("INSERT INTO syncstore.agent_executions (tenant, id, agent_type, cost) VALUES ('direct', %(new)s, 'a', 'NaN')",
     "must be a finite number"),
    ("UPDATE syncstore.task_messages SET content = 'x' WHERE id = %(msg)s", "append-only"),
    ("DELETE FROM syncstore.task_messages WHERE id = %(msg)s", "append-only"),
    ("TRUNCATE syncstore.tasks", "cannot be truncated"),
    # What no replica could take (syncstore.storable): a long text where an index is, deep JSON.
    (f"UPDATE syncstore.tasks SET repository = repeat('r', {storable.MAX_INDEXED_TEXT + 1}) WHERE id = %(id)s",
     "tasks.repository has an index"),
    (f"UPDATE syncstore.tasks SET user_id = repeat('\u00e9', {storable.MAX_INDEXED_TEXT // 2 + 1}) WHERE id = %(id)s",
     "at most 1000 bytes"),
    ("INSERT INTO syncstore.langgraph_checkpoint_blobs (tenant, id, thread_id, channel, version, blob) VALUES "
     f"('direct', %(new)s, 't', 'c', '1', decode(repeat('00', {storable.MAX_BLOB + 1}), 'hex'))",
     "langgraph_checkpoint_blobs.blob is longer than"),
    (f"UPDATE syncstore.tasks SET metadata = ('{{\"a\": ' || repeat('[', {storable.MAX_JSON_DEPTH}) "
     f"|| repeat(']', {storable.MAX_JSON_DEPTH}) || '}}')::jsonb WHERE id = %(id)s", "nested deeper than 128"),
]  # fmt: skip


@pytest.mark.parametrize("statement, message", REFUSED, ids=[m for _, m in REFUSED])
def test_a_bad_direct_write_is_refused_with_a_clear_error_and_changes_nothing(shared, statement, message):
    row, msg = new_id(), new_id()
    sql(shared, ("INSERT INTO syncstore.tasks (tenant, id, title) VALUES (%s, %s, 't')", (T, row)),
        ("INSERT INTO syncstore.task_messages (tenant, id, task_id, position, role) VALUES (%s, %s, %s, 0, 'user')",
         (T, msg, row)))  # fmt: skip
    publish(shared)
    before = queued(shared)
    with pytest.raises(psycopg.Error, match=re.escape(message)):
        sql(shared, (statement, {"id": row, "new": new_id(), "msg": msg}))
    assert queued(shared) == before
    assert cells(shared, row)["title"].value == "t"


def test_a_direct_write_at_the_limits_of_a_storable_value_is_taken_and_published(shared):
    row = new_id()
    depth = storable.MAX_JSON_DEPTH - 1  # inside the object: as deep as a value may be
    sql(shared, (
        f"INSERT INTO syncstore.tasks (tenant, id, title, repository, metadata) VALUES (%(t)s, %(id)s, 't', "
        f"repeat('r', {storable.MAX_INDEXED_TEXT}), ('{{\"a\": ' || repeat('[', {depth}) || repeat(']', {depth}) || '}}')::jsonb)",
        {"t": T, "id": row},
    ))  # fmt: skip
    publish(shared)
    got = cells(shared, row)
    assert len(got["repository"].value) == storable.MAX_INDEXED_TEXT
    assert got["metadata"].value == schema.to_storage(schema.table("tasks").column("metadata"), got["metadata"].value)


# --- the migration ------------------------------------------------------------------


def test_the_rules_and_defaults_are_the_schemas(shared):
    with psycopg.connect(shared) as conn:
        rules = {
            (tbl, col): rest
            for tbl, col, *rest in conn.execute(
                "SELECT tbl, col, kind, required, choices, minimum, maximum, shape, indexed "
                "FROM syncstore.direct_write_rules"
            )
        }
        defaults = dict(
            ((t, c), d)
            for t, c, d in conn.execute(
                "SELECT table_name, column_name, column_default FROM information_schema.columns "
                "WHERE table_schema = 'syncstore' AND column_default IS NOT NULL"
            )
        )
    expected = {
        (t.name, c.name): [c.type, c.required, list(c.choices) if c.choices else None, c.minimum, c.maximum, c.shape,
                           c.name in t.indexes]  # fmt: skip
        for t in schema.TABLES.values()
        for c in t.columns[1:]
    }
    assert rules == expected
    for t in schema.TABLES.values():
        assert "gen_random_uuid" in defaults[(t.name, "id")]
        for c in t.columns[1:]:
            if c.default is not None:
                assert (t.name, c.name) in defaults, (t.name, c.name)


def test_migration_4_rolls_back_and_applies_again(migrated):
    with psycopg.connect(migrated) as conn:
        migrate.rollback(conn, target=3)
        assert conn.execute("SELECT to_regclass('syncstore.direct_writes')").fetchone()[0] is None
        triggers = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'direct_write%'").fetchone()[0]
        assert triggers == 0
        assert migrate.migrate(conn)[0].version == 4
    sql(migrated, ("INSERT INTO syncstore.tasks (tenant, id, title) VALUES (%s, %s, 'back')", (T, new_id())))
    assert queued(migrated) == 1


def test_compaction_collects_a_directly_deleted_row_and_the_triggers_let_it(migrated):
    import datetime as dt

    from syncstore_server.compaction import compact_tenant

    row = new_id()
    sql(migrated, ("INSERT INTO syncstore.tasks (tenant, id, title) VALUES (%s, %s, 'to go')", (T, row)))
    sql(migrated, ("DELETE FROM syncstore.tasks WHERE id = %s", (row,)))
    publish(migrated)

    async def main():
        async with open_store(migrated) as store:
            later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
            return await compact_tenant(store, T, retention_s=60, now=later)

    result = asyncio.run(main())
    assert result is not None
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM syncstore.tasks WHERE id = %s", (row,)).fetchone()[0] == 0
    assert queued(migrated) == 0  # the server's own delete is not a direct write
