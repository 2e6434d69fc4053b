"""Values the server cannot store never wedge a push: a client that bypasses the
replica's checks gets the transaction carrying one refused, for good, and the
transactions after it merge; a value PostgreSQL itself refuses (a data
exception or a program limit) is isolated to its transaction; and every JSON
value a replica accepts comes back from PostgreSQL exactly as the replica holds it."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from syncstore import schema, storable
from syncstore.core import protocol as p

from syncstore_server.store import never_storable, open_store

from .helpers import hello, new_id, recv_until, site, stamp, tenant_rows, token, whole_insert


def run(coro):
    return asyncio.run(coro)


def execution(seq: int, hlc: int, **values) -> p.LocalChange:
    return whole_insert(seq, new_id(), hlc, "agent_executions", agent_type="agent", **values)


def test_a_raw_client_pushing_unstorable_values_gets_those_transactions_refused_and_the_rest_merge(
    shared_server, shared_database
):
    """A JSON value 975 levels deep sits at Python's recursion limit: a server
    whose check ran deeper in its stack failed the merge with server_error on
    every retry, and nothing the client wrote after it ever merged."""
    tenant = f"unstorable-{uuid.uuid4().hex[:8]}"
    h = stamp()
    bad_values = [
        {"input": "[" * 975 + "]" * 975},
        {"input": '{"k": "\\u0000"}'},
        {"trace_id": "t" * (storable.MAX_INDEXED_TEXT + 1)},
        {"output": "1e400"},
    ]
    txs, good = [], []
    for k, values in enumerate(bad_values):
        seq = 2 * k + 1
        txs.append(p.LocalTx(seq, [execution(seq, h + seq, **values)]))
        fine = execution(seq + 1, h + seq + 1, input='{"ok": 1}')
        good.append(fine.id)
        txs.append(p.LocalTx(seq + 1, [fine]))

    async def main():
        async with connect(shared_server.ws_url, max_size=None) as ws:
            assert isinstance(await hello(ws, token(tenant), site(7)), p.Welcome)
            await ws.send(p.encode(p.Push(txs=txs)))
            ack, before = await recv_until(ws, p.Ack)
            assert not any(isinstance(m, p.Error) for m in before), before
            # The connection goes on: a later push merges.
            later = execution(100, h + 100)
            await ws.send(p.encode(p.Push(txs=[p.LocalTx(100, [later])])))
            again, _ = await recv_until(ws, p.Ack)
            return ack, again, later.id

    ack, again, later = run(main())
    assert ack.upto_seq == len(txs)
    assert [(r.tx, r.code) for r in ack.rejected] == [(tx.tx, "bad_value") for tx in txs[::2]]
    assert "nested deeper" in ack.rejected[0].message and "NUL" in ack.rejected[1].message
    assert "indexed" in ack.rejected[2].message
    assert again.upto_seq == 100 and not again.rejected
    rows = tenant_rows(shared_database, tenant, "agent_executions")
    assert sorted(r["id"] for r in rows) == sorted([*good, later])


def test_a_value_postgresql_refuses_past_a_program_limit_is_isolated_to_its_transaction(migrated):
    """PostgreSQL's "stack depth limit exceeded" (54001) and other program
    limits say the value will never be stored, as data exceptions do: the
    transaction is refused for good, never retried. (A trigger stands in for
    the limit, so the test does not depend on the server's stack size.)"""
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION pg_limit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.title = 'too complex' THEN RAISE EXCEPTION 'stack depth limit exceeded' USING ERRCODE = '54001'; END IF; "
            "IF NEW.title = 'too large' THEN RAISE EXCEPTION 'index row size exceeds maximum' USING ERRCODE = '54000'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER pg_limit BEFORE INSERT ON syncstore.tasks FOR EACH ROW EXECUTE FUNCTION pg_limit()")
    h = stamp()
    txs = [
        p.LocalTx(1, [whole_insert(1, new_id(), h + 1, title="too complex")]),
        p.LocalTx(2, [whole_insert(2, new_id(), h + 2, title="kept")]),
        p.LocalTx(3, [whole_insert(3, new_id(), h + 3, title="too large")]),
    ]

    async def main():
        async with open_store(migrated) as store:
            return await store.merge("t", site(1), txs)

    result = run(main())
    assert result.upto_seq == 3
    assert [(r.tx, r.code) for r in result.rejected] == [(1, "bad_value"), (3, "bad_value")]
    assert "stack depth" in result.rejected[0].message
    assert [r["title"] for r in tenant_rows(migrated, "t")] == ["kept"]


def test_only_data_exceptions_and_program_limits_count_as_values_never_stored(migrated):
    """Real errors from PostgreSQL: what a value causes is refused for good;
    what a retry may mend (a conflict with another writer, a lost
    connection) is not."""
    with psycopg.connect(migrated, autocommit=True) as conn:
        def error(sql: str) -> psycopg.Error:
            try:
                conn.execute(sql)
            except psycopg.Error as exc:
                return exc
            raise AssertionError(f"{sql} did not fail")

        conn.execute("SET max_stack_depth = '100kB'")
        assert never_storable(error(f"SELECT '{'[' * 5000}{']' * 5000}'::jsonb"))  # stack depth: 54001
        assert never_storable(error("SELECT 1 / 0"))  # 22012
        assert never_storable(error("SELECT 'not a number'::int"))  # 22P02
        conn.execute("CREATE TEMP TABLE once (k int PRIMARY KEY)")
        conn.execute("INSERT INTO once VALUES (1)")
        assert not never_storable(error("INSERT INTO once VALUES (1)"))  # 23505: not the value's fault alone
        assert not never_storable(error("SELECT pg_terminate_backend(pg_backend_pid())"))  # connection lost


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40)
@given(values=st.lists(JSON_VALUES, min_size=1, max_size=8))
def test_every_json_value_a_replica_accepts_comes_back_from_postgresql_byte_for_byte(shared_database, values):
    """jsonb keeps numbers its own way (1e16 comes back whole, -0.0 as 0.0):
    the canonical text a replica holds must be what the server reads back,
    or the replica and PostgreSQL would differ for good."""
    texts = []
    for value in values:
        try:
            texts.append(schema.to_storage(schema.table("agent_executions").column("input"), value))
        except Exception:
            continue  # refused at the write (e.g. NUL in a string): never reaches the server
    if not texts:
        return
    tenant = f"json-{uuid.uuid4().hex[:8]}"
    h = stamp()
    changes = [execution(k + 1, h + k, input=text) for k, text in enumerate(texts)]

    async def main():
        async with open_store(shared_database) as store:
            result = await store.merge(tenant, site(1), [p.LocalTx(1, changes)])
            assert not result.rejected
            return [(await store.cells(tenant, "agent_executions", c.id))["input"].value for c in changes]

    assert run(main()) == texts


def test_a_value_in_postgresql_that_no_replica_takes_never_fails_a_merge(migrated):
    """JSON nested past Python's limit, stored by SQL before direct writes
    were held to the limits: reading the row (to merge a push into it) must
    not fail the push for ever; the push that replaces the value merges."""
    h = stamp()
    row = new_id()
    deep = "[" * 3000 + "]" * 3000

    async def merge(*txs):
        async with open_store(migrated) as store:
            return await store.merge("t", site(1), list(txs))

    run(merge(p.LocalTx(1, [whole_insert(1, row, h + 1)])))
    with psycopg.connect(migrated) as conn:
        conn.execute("SELECT set_config('syncstore.writer', 'server', false)")  # as the server (no trigger)
        conn.execute("UPDATE syncstore.tasks SET metadata = %s::jsonb WHERE id = %s", (f'{{"a": {deep}}}', row))
    edit = p.LocalChange(2, "tasks", row, h + 2, {"metadata": '{"fixed": true}'}, {"metadata": (h + 1, site(1))})
    result = run(merge(p.LocalTx(2, [edit])))
    assert result.upto_seq == 2 and not result.rejected
    assert tenant_rows(migrated, "t")[0]["metadata"] == {"fixed": True}
