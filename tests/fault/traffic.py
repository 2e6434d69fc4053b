"""Live traffic for the fault tests: replicas that write and sync in the background,
and a program writing directly in PostgreSQL.

Each :class:`Client` is one replica file with a background sync and a writer
thread that keeps creating, editing and deleting tasks (and appending
messages) at a steady pace, remembering what it committed so a test can check
that nothing was lost. A :class:`DirectWriter` does the same with plain SQL.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

import syncstore
from syncstore.errors import NotFoundError


class Client:
    def __init__(self, path: Path, url: str, token: str, *, pace_s: float = 0.01, seed: int = 0, **sync: Any):
        self.path = path
        self.url = url
        self.token = token
        self.pace_s = pace_s
        self.sync_options = {"backoff_base": 0.05, "backoff_max": 0.5, "poll_interval": 0.2, **sync}
        self.store = syncstore.open(str(path))
        self.handle = self.store.start_sync(url, token=token, **self.sync_options)
        self.created: set[str] = set()  # titles of tasks committed here
        self.errors: list[BaseException] = []
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self.closed = False

    def write_once(self) -> None:
        """One local transaction: a new task, an edit, a delete or a message."""
        store, rnd = self.store, self._random
        live = [row["id"] for row in store.query("SELECT id FROM tasks ORDER BY random() LIMIT 5")]
        roll = rnd.random()
        if roll < 0.5 or not live:
            title = f"{self.path.stem} {len(self.created)}"
            store.tasks.create(title, description="x" * rnd.randint(0, 200))
            self.created.add(title)
        elif roll < 0.8:
            store.tasks.update(rnd.choice(live), status=rnd.choice(["pending", "in_progress", "completed"]),
                               description=f"edited by {self.path.stem}")
        elif roll < 0.9:
            store.messages.add(rnd.choice(live), "user", f"note from {self.path.stem}")
        else:
            store.tasks.delete(rnd.choice(live))

    def start_writing(self) -> None:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.write_once()
                except NotFoundError:
                    pass  # the row was deleted by another replica since we picked it
                except Exception as exc:  # a local write must never fail: the test says so
                    self.errors.append(exc)
                    return
                self._stop.wait(self.pace_s)

        self._stop.clear()
        self._writer = threading.Thread(target=run, name=f"writer-{self.path.stem}", daemon=True)
        self._writer.start()

    def stop_writing(self) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.join(30)
            self._writer = None
        assert not self.errors, f"{self.path.stem}: a local write failed: {self.errors[0]!r}"

    def restart_sync(self) -> None:
        """A new background sync on the same store (after the old one gave up or was stopped)."""
        self.handle.stop()
        self.handle = self.store.start_sync(self.url, token=self.token, **self.sync_options)

    def close(self) -> None:
        if self.closed:
            return
        self._stop.set()
        if self._writer is not None:
            self._writer.join(30)
        self.handle.stop()
        self.store.close()
        self.closed = True


def run_for(seconds: float, clients: list[Client], *, during: Any = None) -> None:
    """Let the clients write for ``seconds``; ``during()`` runs in the middle."""
    for client in clients:
        client.start_writing()
    time.sleep(seconds / 2)
    if during is not None:
        during()
    time.sleep(seconds / 2)
    for client in clients:
        client.stop_writing()


def titles_in_postgres(database_url: str, tenant: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT title FROM syncstore.tasks WHERE tenant = %s", (tenant,))}


class DirectWriter:
    """Plain SQL transactions against the synced tables, as an operator's script would
    write them: tenant given, clock columns left alone, rows touched in id order."""

    def __init__(self, database_url: str, tenant: str, *, seed: int = 7, ride_out_outages: bool = False):
        self.url = database_url
        self.ride_out_outages = ride_out_outages  # reconnect when the database goes away (a soak restarts it)
        self.tenant = tenant
        self.inserted: set[str] = set()
        self.edited: set[str] = set()
        self.deleted: set[str] = set()
        self.transactions = 0
        self.outages = 0
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
        inserted, edited, deleted = [], [], []  # recorded once committed
        with conn.transaction():
            if roll < 0.35 or not live:
                for _ in range(rnd.randint(1, 3)):
                    title = f"sql {self.transactions}.{len(inserted)}"
                    conn.execute(
                        "INSERT INTO syncstore.tasks (tenant, id, title, repository) VALUES (%s, %s, %s, 'ops/db')",
                        (tenant, str(uuid.uuid4()), title),
                    )
                    inserted.append(title)
            elif roll < 0.9:
                for row_id in sorted(live):  # the merge locks rows in id order too
                    conn.execute(
                        "UPDATE syncstore.tasks SET status = %s, description = %s WHERE tenant = %s AND id = %s",
                        (rnd.choice(["paused", "completed", "failed"]), f"set by sql {self.transactions}", tenant, row_id),
                    )
                    edited.append(row_id)
                if rnd.random() < 0.5:
                    conn.execute(
                        "INSERT INTO syncstore.task_messages (tenant, id, task_id, position, role, content) "
                        "VALUES (%s, %s, %s, 1000000 + %s, 'system', 'note from sql')",
                        (tenant, str(uuid.uuid4()), live[0], self.transactions),
                    )
            else:
                conn.execute("DELETE FROM syncstore.tasks WHERE tenant = %s AND id = %s", (tenant, live[0]))
                deleted.append(live[0])
        self.inserted.update(inserted)
        self.edited.update(edited)
        self.deleted.update(deleted)
        self.transactions += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    while not self._stop.is_set():
                        self._transaction(conn)
                        self._stop.wait(self._random.uniform(0.005, 0.03))
            except psycopg.OperationalError as exc:
                if not self.ride_out_outages:
                    self.errors.append(exc)
                    return
                self.outages += 1
                self._stop.wait(0.5)
            except BaseException as exc:  # any other failure (a deadlock included) fails the test
                self.errors.append(exc)
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self.errors, f"the direct writer failed: {self.errors[0]!r}"
