"""The server restarted during live traffic, gracefully (SIGTERM) and with kill -9:
clients reconnect by themselves, nothing acknowledged is lost, nothing is merged twice."""

from __future__ import annotations

import time

import psycopg
import pytest

from .converge import assert_converged, wait_quiet, wait_until
from .processes import ServerProcess
from .traffic import run_for, titles_in_postgres


def doubled(database_url: str, tenant: str) -> list[tuple[bytes, int]]:
    """Client transactions that have more than one log entry (merged twice)."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT origin_site, origin_tx FROM syncstore.change_log WHERE tenant = %s "
            "AND origin_site <> syncstore.sql_site() GROUP BY 1, 2 HAVING count(*) > 1",
            (tenant,),
        ).fetchall()


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_the_server_restarted_under_live_traffic_loses_and_doubles_nothing(migrated, tenant, clients, how):
    with ServerProcess(migrated) as server:
        team = [clients(server.url, name) for name in ("a", "b", "c")]
        wait_until(lambda: all(c.handle.connected for c in team), what="every client connecting")
        exits: list[int | None] = []

        def restart() -> None:
            before = [c.handle.connects for c in team]
            if how == "sigterm":
                exits.append(server.terminate())
            else:
                server.kill()
            time.sleep(0.5)  # the clients keep writing, offline
            server.start()
            wait_until(
                lambda: all(c.handle.connects > n for c, n in zip(team, before)),
                what="every client reconnecting to the new server process",
            )

        run_for(6, team, during=restart)
        if how == "sigterm":
            assert exits == [0]  # drained and stopped cleanly

        wait_quiet(migrated, tenant, [c.handle for c in team])
        assert_converged(migrated, tenant, [c.store for c in team])
        assert set().union(*(c.created for c in team)) <= titles_in_postgres(migrated, tenant)
        assert doubled(migrated, tenant) == []
