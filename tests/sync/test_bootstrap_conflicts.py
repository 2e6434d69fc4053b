"""A replica that bootstraps from a snapshot holds the conflict records of its
tenant's rows, as one that followed the log from the start does: the records
travel with the chunk whose id range holds their row (live or deleted,
resolved or not), and a filtered shape gets only those of its rows."""

from __future__ import annotations

import psycopg
import pytest

from syncstore.core import protocol as p
from syncstore.sync import list_conflicts, resolve_conflict

pytestmark = pytest.mark.postgres


def server_conflicts(database_url: str, tenant: str) -> dict[str, tuple]:
    with psycopg.connect(database_url) as conn:
        return {
            str(row[0]): tuple(row[1:])
            for row in conn.execute(
                "select id, tbl, row_id, col, winner_hlc, winner_site, loser_hlc, loser_site, incoming_won "
                "from syncstore.conflicts where tenant = %s",
                (tenant,),
            )
        }


def local_conflicts(store) -> dict[str, tuple]:
    return {
        c.id: (c.table, c.row_id, c.column, c.winner_hlc, c.winner_site, c.loser_hlc, c.loser_site, c.incoming_won)
        for c in list_conflicts(store, include_resolved=True)
    }


def collide(url: str, token: str, a, b, ids: list[str]) -> None:
    """Both replicas retitle the same rows without seeing each other's edit."""
    for row_id in ids:
        a.tasks.update(row_id, title=f"a {row_id}")
        b.tasks.update(row_id, title=f"b {row_id}")
    a.sync(url, token=token)
    b.sync(url, token=token)
    a.sync(url, token=token)


def test_a_replica_that_bootstraps_after_conflicts_holds_their_records(chunky, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    token = chunky.token(tenant)
    ids = sorted(a.insert_many("tasks", [{"title": f"task {i}"} for i in range(120)]))
    a.sync(chunky.url, token=token)
    b.sync(chunky.url, token=token)
    collide(chunky.url, token, a, b, [ids[3], ids[70], ids[119]])  # the first, second and last chunk
    a.tasks.delete(ids[70])  # a deleted row is not shipped; its record still is
    a.sync(chunky.url, token=token)
    expected = server_conflicts(chunky.database_url, tenant)
    assert len(expected) == 3
    # A record resolved by one replica travels too: the others hold it as the log gave it.
    first = next(c for c in list_conflicts(b) if c.row_id == ids[3])
    resolve_conflict(b, first.id, keep="winner")
    b.sync(chunky.url, token=token)

    late = replicas("late")
    result = late.sync(chunky.url, token=token)
    assert result.snapshot_rows == 119
    assert local_conflicts(late) == expected == local_conflicts(a)
    by_id = {c.id: c for c in list_conflicts(late)}
    for record in list_conflicts(a):
        assert by_id[record.id].winner_value == record.winner_value
        assert by_id[record.id].loser_value == record.loser_value
        assert by_id[record.id].created_at == record.created_at
    # Received again through the log (a chunk read after the record was made
    # may meet it in the stream too): still one record each.
    late.sync(chunky.url, token=token)
    assert local_conflicts(late) == expected


def test_a_filtered_shape_gets_the_records_of_its_rows_only(chunky, tenant, replicas):
    a, b = replicas("a"), replicas("b")
    token = chunky.token(tenant)
    web = a.insert_many("tasks", [{"title": f"web {i}", "repository": "acme/web"} for i in range(3)])
    api = a.insert_many("tasks", [{"title": f"api {i}", "repository": "acme/api"} for i in range(3)])
    a.sync(chunky.url, token=token)
    b.sync(chunky.url, token=token)
    collide(chunky.url, token, a, b, [web[1], api[1]])
    records = local_conflicts(a)
    assert {r[1] for r in records.values()} == {web[1], api[1]}

    partial = replicas("partial")
    partial.sync(chunky.url, token=token, shapes=[p.Shape("tasks", where={"repository": ["acme/web"]})])
    assert {r[1] for r in local_conflicts(partial).values()} == {web[1]}
    assert local_conflicts(partial) == {k: v for k, v in records.items() if v[1] == web[1]}
