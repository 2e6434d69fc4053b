"""A mixed writer: a program changing rows directly in PostgreSQL with SQL while
clients sync through two server instances. Its writes reach every client, its
edits and the clients' merge by the same rule, nothing deadlocks, nothing is lost."""

from __future__ import annotations

import random
import threading
import time
import uuid

import psycopg

from .converge import assert_converged, wait_quiet, wait_until
from .processes import ServerProcess
from .traffic import run_for, titles_in_postgres


class DirectWriter:
    """Plain SQL transactions against the synced tables, as an operator's script would
    write them: tenant given, clock columns left alone, rows touched in id order."""

    def __init__(self, database_url: str, tenant: str, *, seed: int = 7):
        self.url = database_url
        self.tenant = tenant
        self.inserted: set[str] = set()
        self.edited: set[str] = set()
        self.deleted: set[str] = set()
        self.transactions = 0
        self.errors: list[BaseException] = []
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="direct-writer", daemon=True)

    def _transaction(self, conn: psycopg.Connection) -> None:
        rnd, tenant = self._random, self.tenant
        live = [row[0] for row in conn.execute(
            "SELECT id FROM syncstore.tasks WHERE tenant = %s AND NOT _deleted ORDER BY random() LIMIT 4", (tenant,)
        )]  # fmt: skip
        roll = rnd.random()
        with conn.transaction():
            if roll < 0.35 or not live:
                for _ in range(rnd.randint(1, 3)):
                    title = f"sql {len(self.inserted)}"
                    conn.execute(
                        "INSERT INTO syncstore.tasks (tenant, id, title, repository) VALUES (%s, %s, %s, 'ops/db')",
                        (tenant, str(uuid.uuid4()), title),
                    )
                    self.inserted.add(title)
            elif roll < 0.9:
                for row_id in sorted(live):  # the merge locks rows in id order too
                    conn.execute(
                        "UPDATE syncstore.tasks SET status = %s, description = %s WHERE tenant = %s AND id = %s",
                        (rnd.choice(["paused", "completed", "failed"]), f"set by sql {self.transactions}", tenant, row_id),
                    )
                    self.edited.add(row_id)
                if rnd.random() < 0.5:
                    conn.execute(
                        "INSERT INTO syncstore.task_messages (tenant, id, task_id, position, role, content) "
                        "VALUES (%s, %s, %s, 1000000 + %s, 'system', 'note from sql')",
                        (tenant, str(uuid.uuid4()), live[0], self.transactions),
                    )
            else:
                conn.execute("DELETE FROM syncstore.tasks WHERE tenant = %s AND id = %s", (tenant, live[0]))
                self.deleted.add(live[0])
        self.transactions += 1

    def _run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self._stop.is_set():
                    self._transaction(conn)
                    self._stop.wait(self._random.uniform(0.005, 0.03))
        except BaseException as exc:  # any failure (a deadlock included) fails the test
            self.errors.append(exc)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self.errors, f"the direct writer failed: {self.errors[0]!r}"


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
