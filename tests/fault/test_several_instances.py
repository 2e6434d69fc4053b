"""Several server processes on one database: a change accepted by one instance
reaches the clients connected to any other, by PostgreSQL's LISTEN/NOTIFY.

The servers never poll the log: without a notification crossing from one
process to the other, the second instance's clients would not hear of the
change at all, and these tests would time out.
"""

from __future__ import annotations

import re

import psycopg

from .converge import assert_converged, wait_quiet, wait_until
from .processes import ServerProcess
from .traffic import run_for, titles_in_postgres


def test_a_change_accepted_by_one_instance_reaches_clients_of_the_other(migrated, tenant, clients):
    with ServerProcess(migrated) as one, ServerProcess(migrated) as two:
        a = clients(one.url, "a")
        b = clients(two.url, "b")
        c = clients(two.url, "c")
        wait_until(lambda: a.handle.connected and b.handle.connected and c.handle.connected, what="connecting")

        task = a.store.tasks.create("written through instance one")
        wait_until(lambda: b.store.tasks.find(task.id) is not None, what="the task reaching b through instance two")
        wait_until(lambda: c.store.tasks.find(task.id) is not None, what="the task reaching c through instance two")
        b.store.tasks.update(task.id, status="completed")
        wait_until(lambda: a.store.tasks.get(task.id).status == "completed", what="b's edit reaching a")

        # Live traffic from all three at once, through both instances.
        run_for(4, [a, b, c])
        wait_quiet(migrated, tenant, [a.handle, b.handle, c.handle])
        assert_converged(migrated, tenant, [a.store, b.store, c.store])
        assert {*a.created, *b.created, *c.created} <= titles_in_postgres(migrated, tenant)


def test_changes_still_cross_after_an_instance_loses_its_listening_connection(migrated, tenant, clients):
    with ServerProcess(migrated) as one, ServerProcess(migrated) as two:
        a = clients(one.url, "a")
        b = clients(two.url, "b")
        wait_until(lambda: a.handle.connected and b.handle.connected, what="connecting")
        first = a.store.tasks.create("before the listener is cut")
        wait_until(lambda: b.store.tasks.find(first.id) is not None, what="the first task reaching b")

        # Cut instance two's LISTEN connections (as a network blip or a failover would).
        backends = two.listening_backends()
        assert backends
        with psycopg.connect(migrated, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (backends,))
        # Written while instance two may not be listening: it must arrive anyway
        # (the listener reconnects and wakes every stream), and so must later ones.
        second = a.store.tasks.create("while the listener reconnects")
        wait_until(lambda: b.store.tasks.find(second.id) is not None, what="the second task reaching b")
        two.wait_for(re.compile("lost the database notification connection"), timeout=30)
        third = a.store.tasks.create("after the listener is back")
        wait_until(lambda: b.store.tasks.find(third.id) is not None, what="the third task reaching b")

        wait_quiet(migrated, tenant, [a.handle, b.handle])
        assert_converged(migrated, tenant, [a.store, b.store])
