"""A mixed writer: a program changing rows directly in PostgreSQL with SQL while
clients sync through two server instances. Its writes reach every client, its
edits and the clients' merge by the same rule, nothing deadlocks, nothing is lost."""

from __future__ import annotations

import time

import psycopg

from .converge import assert_converged, wait_quiet, wait_until
from .processes import ServerProcess
from .traffic import DirectWriter, run_for, titles_in_postgres


def deadlocks(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def test_direct_sql_writes_while_clients_sync_reach_every_client(migrated, tenant, clients):
    with ServerProcess(migrated) as one, ServerProcess(migrated) as two:
        a, b, c = clients(one.url, "a"), clients(two.url, "b"), clients(two.url, "c")
        team = [a, b, c]
        wait_until(lambda: all(x.handle.connected for x in team), what="every client connecting")
        deadlocks_before = deadlocks(migrated)
        writer = DirectWriter(migrated, tenant)
        writer.start()
        try:
            run_for(8, team)
        finally:
            writer.stop()

        wait_quiet(migrated, tenant, [x.handle for x in team])
        state = assert_converged(migrated, tenant, [x.store for x in team])
        assert writer.transactions > 50 and writer.inserted and writer.edited and writer.deleted
        live_titles = {row["title"] for row in state["tasks"][0].values()}
        assert {t for t in writer.inserted} & live_titles, "no direct insert reached the clients"
        assert writer.inserted | set().union(*(x.created for x in team)) <= titles_in_postgres(migrated, tenant)
        for replica in team:  # direct deletes reached every client
            assert not writer.deleted & {row["id"] for row in replica.store.query("SELECT id FROM tasks")}
        # No deadlock anywhere: no merge was retried after one, and PostgreSQL counted
        # none (its statistics reach pg_stat_database within a second or two).
        assert "DeadlockDetected" not in "".join(one.output + two.output)
        time.sleep(2)
        assert deadlocks(migrated) == deadlocks_before
