"""Soak: minutes of live traffic through two server instances with faults injected,
then heal, wait until quiet, and compare every replica with PostgreSQL.

The fault tests (tests/fault/) each try one fault for a few seconds; this runs
them together for longer. Replicas write and sync in the background (half of
them through each instance) while a program writes directly in PostgreSQL with
SQL, and every ``--interval`` seconds one fault, picked at random, strikes:

- an instance stopped with SIGTERM (drained), then started again;
- an instance killed with kill -9, then started again;
- an instance's LISTEN connections cut (``pg_terminate_backend``);
- a replica's file deleted, then a fresh replica opened in its place;
- with ``--private-postgres``: PostgreSQL itself stopped for a couple of seconds
  (a cluster of the soak's own, never the machine's).

At the end: faults stop, both instances run, writers stop; the soak waits until
every replica has pushed everything and applied the whole log, then compares
each with PostgreSQL and checks that every write a replica or the SQL writer
committed is there. It prints what happened, and exits 1 if anything differs.

    .venv/bin/python benchmarks/soak.py [--minutes 5] [--clients 4] [--interval 20] [--private-postgres]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fault.conftest import migrate_url  # noqa: E402
from fault.converge import assert_converged, wait_quiet  # noqa: E402
from fault.processes import PrivatePostgres, ServerProcess, token  # noqa: E402
from fault.traffic import Client, DirectWriter, titles_in_postgres  # noqa: E402

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
TENANT = "soak"


class Soak:
    def __init__(self, url: str, folder: Path, *, clients: int, pg: PrivatePostgres | None, seed: int):
        self.url = url
        self.folder = folder
        self.pg = pg
        self.random = random.Random(seed)
        self.servers = [ServerProcess(url).start(), ServerProcess(url).start()]
        self.clients = [self._client(i) for i in range(clients)]
        self.retired: list[Client] = []  # replicas whose files were deleted
        self.writer = DirectWriter(url, TENANT, seed=seed, ride_out_outages=pg is not None)
        self.faults: Counter[str] = Counter()

    def _client(self, i: int) -> Client:
        server = self.servers[i % len(self.servers)]
        return Client(self.folder / f"replica{i}.db", server.url, token(TENANT), seed=self.random.randrange(1 << 30))

    # --- faults ---------------------------------------------------------------

    def strike(self) -> str:
        kinds = ["sigterm", "kill-9", "cut-listener", "reset-replica"]
        if self.pg is not None:
            kinds.append("restart-postgres")
        kind = self.random.choice(kinds)
        server = self.random.choice(self.servers)
        if kind == "sigterm":
            server.terminate()
            time.sleep(self.random.uniform(0.2, 2))
            server.start()
        elif kind == "kill-9":
            server.kill()
            time.sleep(self.random.uniform(0.2, 2))
            server.start()
        elif kind == "cut-listener":
            with psycopg.connect(self.url, autocommit=True) as conn:
                backends = server.listening_backends()
                if not backends:  # over a Unix socket the instances cannot be told apart: cut them all
                    backends = [row[0] for row in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE application_name IN "
                        "('syncstore-server-listen', 'syncstore-server-direct-writes')"
                    )]  # fmt: skip
                conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (backends,))
        elif kind == "reset-replica":
            i = self.random.randrange(len(self.clients))
            old = self.clients[i]
            old.close()
            self.retired.append(old)
            for suffix in ("", "-wal", "-shm"):
                old.path.with_name(old.path.name + suffix).unlink(missing_ok=True)
            self.clients[i] = self._client(i)
            self.clients[i].start_writing()
        elif kind == "restart-postgres":
            assert self.pg is not None
            self.pg.stop_cluster()
            time.sleep(self.random.uniform(1, 3))
            self.pg.start_cluster()
        self.faults[kind] += 1
        return kind

    # --- the run --------------------------------------------------------------

    def run(self, *, seconds: float, interval: float) -> bool:
        for client in self.clients:
            client.start_writing()
        self.writer.start()
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            time.sleep(min(interval * self.random.uniform(0.5, 1.5), max(0.0, seconds - (time.monotonic() - started))))
            if time.monotonic() - started >= seconds:
                break
            kind = self.strike()
            print(f"{time.monotonic() - started:7.1f} s  {kind}", flush=True)
        # Heal: every instance up, writers stopped, then quiet.
        for server in self.servers:
            if not server.running:
                server.start()
        for client in self.clients:
            client.stop_writing()
        self.writer.stop()
        print("healing: waiting until every replica is quiet ...", flush=True)
        try:
            wait_quiet(self.url, TENANT, [c.handle for c in self.clients], timeout=300)
            state = assert_converged(self.url, TENANT, [c.store for c in self.clients])
        except AssertionError as exc:
            print(f"NOT CONVERGED: {exc}")
            return False
        # Every write of a replica in use, and of the SQL writer, is in PostgreSQL.
        # (A deleted replica's writes are not counted: what it had not pushed
        # went with its file.)
        committed = set().union(*(c.created for c in self.clients)) | self.writer.inserted
        lost = committed - titles_in_postgres(self.url, TENANT)
        live = {name: len(rows) for name, (rows, _) in state.items() if rows}
        print(f"converged: {len(self.clients)} replicas equal PostgreSQL ({live})")
        print(f"writes: replicas {sum(len(c.created) for c in self.clients + self.retired)} new tasks, "
              f"SQL writer {self.writer.transactions} transactions ({self.writer.outages} outages ridden out)")  # fmt: skip
        print(f"faults: {dict(self.faults)}")
        if lost:
            print(f"LOST: {len(lost)} committed tasks are not in PostgreSQL, e.g. {sorted(lost)[:5]}")
        return not lost

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.servers:
            if server.running:
                server.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4, help="replicas, half through each instance")
    parser.add_argument("--interval", type=float, default=20.0, help="mean seconds between faults")
    parser.add_argument("--private-postgres", action="store_true", help="run on a cluster of our own, and restart it too")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"soak: {args.minutes} min, {args.clients} replicas, two instances, a fault every ~{args.interval:g} s, "
          f"seed {seed}")  # fmt: skip

    folder = Path(tempfile.mkdtemp(prefix="syncstore-soak-"))
    pg = None
    made = None
    try:
        if args.private_postgres:
            pg = PrivatePostgres()
            url = migrate_url(pg.start())
        else:
            made = f"syncstore_soak_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{made}"')
            url = migrate_url(make_conninfo(**{**conninfo_to_dict(ADMIN_URL), "dbname": made}))
        soak = Soak(url, folder, clients=args.clients, pg=pg, seed=seed)
        try:
            ok = soak.run(seconds=args.minutes * 60, interval=args.interval)
        finally:
            soak.close()
    finally:
        if pg is not None:
            pg.close()
        if made is not None:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{made}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)
    print("soak passed" if ok else "soak FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
