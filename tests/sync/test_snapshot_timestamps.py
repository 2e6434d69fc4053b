"""Snapshot chunks read timestamps as PostgreSQL's ISO text and put them in
canonical form: the same text to_char gives (the form every other read uses),
whole seconds and trimmed fractions included; a timestamp that text does not
hold (a year past 9999) makes the chunk read through to_char."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from syncstore.core import protocol as p
from syncstore.core import shapes as sh
from syncstore_server.store import open_store

pytestmark = pytest.mark.postgres

STAMPS = [
    "2025-01-01 00:00:00+00",
    "2025-01-01 00:00:00.5+00",
    "2025-07-17 10:00:00.000001+00",
    "2025-07-17 23:59:59.999999-07",  # another zone: the next day in UTC
    "0999-03-04 05:06:07.12+00",
]


def seed(database_url: str, tenant: str, stamps: list[str]) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT set_config('syncstore.writer', 'server', true)")
        for stamp in stamps:
            conn.execute(
                "INSERT INTO syncstore.task_messages (tenant, id, task_id, position, role, type, content, data, "
                "created_at, _deleted, _hlc, _site) VALUES (%s, %s, %s, 0, 'user', 'message', 'x', '{}', %s, false, 1, %s)",
                (tenant, str(uuid.uuid4()), str(uuid.uuid4()), stamp, b"\x05" * 16),
            )


def read_both(database_url: str, tenant: str) -> tuple[dict[str, str], dict[str, str]]:
    shape = sh.check_shape(p.Shape("task_messages"))

    async def run() -> tuple[dict[str, str], dict[str, str]]:
        async with open_store(database_url) as store:
            chunk, _, exhausted = await store.read_snapshot(tenant, shape, "", limit=100, position=True)
            assert exhausted
            got = {r.id: r.cells["created_at"][0] for r in chunk.row_changes()}
            view = store.catalog.tables["task_messages"].full
            async with store.pool.connection() as conn:
                cur = await conn.execute(f"{view.select_all} WHERE tenant = %s", (tenant,))
                expected = {row[0]: row[1 + view.columns.index("created_at")] for row in await cur.fetchall()}
        return got, expected

    return asyncio.run(run())


def test_timestamps_read_as_text_match_to_char(sync_server, tenant):
    seed(sync_server.database_url, tenant, STAMPS)
    got, expected = read_both(sync_server.database_url, tenant)
    assert len(got) == len(STAMPS) and got == expected
    assert "2025-01-01T00:00:00.500000Z" in got.values() and "2025-07-18T06:59:59.999999Z" in got.values()


def test_a_timestamp_iso_text_does_not_hold_reads_the_chunk_through_to_char(sync_server, tenant):
    seed(sync_server.database_url, tenant, [*STAMPS[:2], "10000-01-01 00:00:00+00"])
    got, expected = read_both(sync_server.database_url, tenant)
    assert len(got) == 3 and got == expected
