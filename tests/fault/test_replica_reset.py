"""A client replica reset (its file deleted) while others keep writing: the
fresh replica, a new site with nothing, rebuilds itself from the server (from a
snapshot where the server offers one, else from the whole log) and converges."""

from __future__ import annotations

import time

from .converge import assert_converged, wait_quiet, wait_until
from .processes import ServerProcess
from .traffic import run_for


def test_a_deleted_replica_rebuilds_from_the_server_and_converges(migrated, tenant, clients):
    with ServerProcess(migrated) as server:
        a, b = clients(server.url, "a"), clients(server.url, "b")
        run_for(3, [a, b])
        wait_quiet(migrated, tenant, [a.handle, b.handle])
        old_site = b.store.site_id

        a.start_writing()  # a keeps writing through the reset and the rebuild
        b.close()
        for suffix in ("", "-wal", "-shm"):
            b.path.with_name(b.path.name + suffix).unlink(missing_ok=True)
        fresh = clients(server.url, "b")
        assert fresh.store.site_id != old_site and fresh.store.sync_status().cursor == 0
        wait_until(lambda: fresh.store.sync_status().cursor > 0, what="the fresh replica receiving data")
        time.sleep(1)
        a.stop_writing()

        run_for(2, [a, fresh])  # and it writes itself once rebuilt
        wait_quiet(migrated, tenant, [a.handle, fresh.handle])
        state = assert_converged(migrated, tenant, [a.store, fresh.store])
        assert len(state["tasks"][0]) > 0
