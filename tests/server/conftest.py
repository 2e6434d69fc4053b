"""Fixtures for the server suite: migrated databases, a running server, a raw client.

Everything here is real: the machine's PostgreSQL, a real ``SyncServer``
listening on a free port (in a thread with its own event loop), and clients
that speak the protocol over a real websocket. Tests stay independent by using
a tenant of their own when they share a server.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from syncstore_server import SyncServer, migrate

from .helpers import SECRET


def admin_url() -> str:
    import os

    return os.environ.get("SYNCSTORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def new_database(*, encoding: str | None = None) -> tuple[str, str]:
    name = f"syncstore_test_{uuid.uuid4().hex[:12]}"
    extra = f" ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" if encoding else ""
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{extra}')
    return name, make_conninfo(**{**conninfo_to_dict(admin_url()), "dbname": name})


def drop_database(name: str) -> None:
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate_url(url: str) -> str:
    with psycopg.connect(url) as conn:
        migrate.migrate(conn)
    return url


@pytest.fixture
def migrated(database_url: str) -> str:
    """A new database with the server schema."""
    return migrate_url(database_url)


@pytest.fixture(scope="module")
def shared_database():
    """One migrated database for a module's tests (each uses its own tenant)."""
    name, url = new_database()
    try:
        yield migrate_url(url)
    finally:
        drop_database(name)


# --- a server in a thread ---------------------------------------------------------


class ServerThread:
    """A real SyncServer on a free port, run by its own event loop in a thread."""

    def __init__(self, url: str, **options: Any):
        options.setdefault("port", 0)
        self.server = SyncServer(url, secret=SECRET, **options)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(60)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def shared_server(shared_database):
    server = ServerThread(shared_database, max_frame=64 * 1024, max_batch=100, max_drift_ms=60_000).start()
    try:
        yield server
    finally:
        server.stop()
