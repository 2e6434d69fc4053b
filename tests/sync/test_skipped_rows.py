"""A snapshot row the replica cannot take is reported, not a wedge: the rest of
the snapshot applies, the sync finishes, and the row is kept in
``_ss_sync_skipped`` with the reason (``sync_status().skipped_rows``)."""

from __future__ import annotations

import msgspec
import pytest

from .conftest import psycopg, replica_rows

pytestmark = pytest.mark.postgres


def test_a_snapshot_row_the_replica_refuses_is_skipped_and_reported(sync_server, tenant, replicas):
    writer = replicas("writer")
    token = sync_server.token(tenant)
    good = writer.tasks.create("good").id
    bad = writer.tasks.create("bad").id
    writer.tasks.delete(bad)
    writer.sync(sync_server.url, token=token)
    # A value no replica takes, as a server of another version (or a hand in
    # the database) might hold it: a status outside the schema's choices.
    with psycopg.connect(sync_server.database_url) as conn:
        conn.execute("select set_config('syncstore.writer', 'server', false)")
        conn.execute("update syncstore.tasks set status = 'bogus' where tenant = %s and id = %s", (tenant, bad))
    fresh = replicas("fresh")
    fresh.sync(sync_server.url, token=token)  # before: ValidationError on every sync, for good
    assert set(replica_rows(fresh)) == {good}
    status = fresh.sync_status()
    assert status.skipped_rows == 1 and status.last_error is None
    (tbl, pk, problem, cells) = fresh.query("select tbl, pk, problem, cells from _ss_sync_skipped")[0].values()
    assert (tbl, pk) == ("tasks", bad) and "bogus" in problem
    assert msgspec.msgpack.decode(cells)["status"][0] == "bogus"
    # Sync goes on.
    writer.tasks.create("later")
    writer.sync(sync_server.url, token=token)
    fresh.sync(sync_server.url, token=token)
    assert len(replica_rows(fresh)) == 2
