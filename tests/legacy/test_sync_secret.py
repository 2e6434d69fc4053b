"""End to end: after an import and a sync, no GitHub token is anywhere in PostgreSQL."""

from __future__ import annotations

import pytest

from syncstore.legacy import find_in_synced_data, import_legacy

from .exports import SAMPLE_TOKENS, make_environment, make_export, make_task

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.postgres


def find_in_database(database_url: str, needle: str) -> list[str]:
    """Every table of the database (syncstore's and any other) in which a row,
    rendered as text, holds ``needle`` as text or as hex (for bytea columns)."""
    hits = []
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema_name, table_name in tables:
            qualified = psycopg.sql.Identifier(schema_name, table_name)
            query = psycopg.sql.SQL("select count(*) from {} as t where t::text like %s or t::text like %s").format(qualified)
            (count,) = conn.execute(query, (f"%{needle}%", f"%{needle.encode().hex()}%")).fetchone()
            if count:
                hits.append(f"{schema_name}.{table_name}")
    return hits


@pytest.fixture
def server(database_url):
    from sync.conftest import RunningServer  # the sync suite's in-process server

    running = RunningServer(database_url)
    try:
        yield running
    finally:
        running.close()


def test_no_token_reaches_postgresql(server, store, sample_path):
    env = make_environment()
    stray = env["githubToken"]
    task = make_task(messages=[{"role": "assistant", "type": "message", "data": {"text": f"cloned with {stray}"}}])
    import_legacy(store, sample_path)
    import_legacy(store, make_export([task], [env]))
    result = store.sync(server.url, token=server.token("tenant-legacy"))
    assert result.rejected == 0 and result.pushed > 0
    # The rows did arrive: the check below is not vacuous.
    assert find_in_database(server.database_url, "Add a README with build badges") != []
    for token in (*SAMPLE_TOKENS, stray):
        assert find_in_synced_data(store, token) == []
        assert find_in_database(server.database_url, token) == []
