"""Live traffic for the fault tests: replicas that write and sync in the background.

Each :class:`Client` is one replica file with a background sync and a writer
thread that keeps creating, editing and deleting tasks (and appending
messages) at a steady pace, remembering what it committed so a test can check
that nothing was lost.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

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
    import psycopg

    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT title FROM syncstore.tasks WHERE tenant = %s", (tenant,))}
