"""A real sync server for the client's end-to-end tests, and ways to look into its database.

The server runs in this process, on its own asyncio loop in a thread, on a free
port, against a fresh PostgreSQL database; tests talk to it over real websockets
from replicas in temporary files (or from child processes).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

import pytest

import syncstore
from syncstore import schema

psycopg = pytest.importorskip("psycopg")

from syncstore_server.app import SyncServer  # noqa: E402
from syncstore_server.auth import Secret, mint_token  # noqa: E402

from pg_rows import tenant_rows  # noqa: E402

ADMIN_URL = os.environ.get("SYNCSTORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = Secret("syncstore-client-tests-" + "s" * 24, source="tests")


class RunningServer:
    """A SyncServer on a background event loop; ``restart()`` keeps its port."""

    def __init__(self, database_url: str, **options: Any):
        self.database_url = database_url
        self._options = {"host": "127.0.0.1", "port": 0, **options}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-sync-server", daemon=True)
        self._thread.start()
        self.server: SyncServer | None = None
        self.port = 0
        self.start()

    def _call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> None:
        options = dict(self._options)
        if self.port:
            options["port"] = self.port
        self.server = SyncServer(self.database_url, secret=SECRET, **options)
        self._call(self.server.start())
        self.port = self.server.port

    def stop(self) -> None:
        if self.server is not None:
            self._call(self.server.stop())
            self.server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def token(self, tenant: str, **options: Any) -> str:
        return mint_token(SECRET, tenant=tenant, **options)


@pytest.fixture(scope="module")
def sync_database():
    """One PostgreSQL database per test module (tests keep apart by tenant)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"syncstore_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield make_conninfo(**{**conninfo_to_dict(ADMIN_URL), "dbname": name})
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def sync_server(sync_database):
    """A running server shared by a module's tests; each test uses its own tenant."""
    running = RunningServer(sync_database)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def chunky(sync_database):
    """A server sending small snapshot chunks (50 rows), so a bootstrap has many."""
    running = RunningServer(sync_database, snapshot_rows=50)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def replicas(tmp_path):
    """A factory of replicas in files of their own; all closed afterwards."""
    opened: list[syncstore.Store] = []

    def make(name: str | None = None, **options: Any) -> syncstore.Store:
        store = syncstore.open(str(tmp_path / f"{name or uuid.uuid4().hex[:8]}.db"), **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        handle = getattr(store, "_sync_handle", None)
        if handle is not None:
            handle.stop()
        store.close()


# --- looking into PostgreSQL and the replicas ------------------------------------------

def server_rows(database_url: str, tenant: str, table: str = "tasks") -> dict[str, dict[str, Any]]:
    """The tenant's live rows in ``table`` as PostgreSQL holds them, in canonical form."""
    with psycopg.connect(database_url) as conn:
        return {row_id: values for row_id, deleted, values in tenant_rows(conn, schema.table(table), tenant) if not deleted}


def replica_rows(store: syncstore.Store, table: str = "tasks") -> dict[str, dict[str, Any]]:
    names = schema.table(table).column_names
    return {row["id"]: {n: row[n] for n in names[1:]} for row in store.query(f"select * from {table}")}


def server_cells(database_url: str, tenant: str, table: str = "tasks") -> dict[str, dict[str, list[Any]]]:
    """The tenant's rows as PostgreSQL holds them, cell by cell with clocks:
    ``{id: {column: [value, hlc, site as hex]}}``, a deleted row as its
    ``_deleted`` cell alone (compare with :func:`replica_cells`)."""
    from syncstore_server.clocks import overrides

    tbl = schema.table(table)
    out: dict[str, dict[str, list[Any]]] = {}
    with psycopg.connect(database_url) as conn:
        clocks = {
            row_id: (hlc, bytes(site), blob)
            for row_id, hlc, site, blob in conn.execute(
                f"select id, _hlc, _site, _clocks from syncstore.{tbl.name} where tenant = %s", (tenant,)
            )
        }
        for row_id, deleted, values in tenant_rows(conn, tbl, tenant):
            if deleted:
                out[row_id] = {"_deleted": [1]}
                continue
            hlc, site, blob = clocks[row_id]
            extra = overrides(blob) if blob else {}
            out[row_id] = {}
            for name, value in {**values, "_deleted": 0}.items():
                at_hlc, at_site = extra.get(name, (hlc, site))
                out[row_id][name] = [value, at_hlc, bytes(at_site).hex()]
    return out


def replica_cells(store: syncstore.Store, table: str = "tasks") -> dict[str, dict[str, list[Any]]]:
    """The replica's rows in the form of :func:`server_cells`."""
    out: dict[str, dict[str, list[Any]]] = {}
    for (row_id,) in store.connection.execute(f"select id from {schema.table(table).name}"):
        out[row_id] = {n: [c.value, c.hlc, c.site.hex()] for n, c in store.cells(table, row_id).items()}
    for (row_id,) in store.connection.execute("select pk from _ss_tombstones where tbl = ?", (table,)):
        out[row_id] = {"_deleted": [1]}
    return out


def server_acked(database_url: str, tenant: str, site: bytes) -> int:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "select acked_seq from syncstore.site_acks where tenant = %s and site = %s", (tenant, site)
        ).fetchone()
    return 0 if found is None else found[0]


def server_log_count(database_url: str, tenant: str, site: bytes | None = None) -> int:
    sql = "select count(*) from syncstore.change_log where tenant = %s"
    params: list[Any] = [tenant]
    if site is not None:
        sql += " and origin_site = %s"
        params.append(site)
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchone()[0]
