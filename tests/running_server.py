"""A real sync server in a thread of the test process, on a free port, against a
fresh PostgreSQL database: for tests that need one without the server suite's fixtures."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from contextlib import contextmanager
from typing import Iterator

ADMIN_URL = os.environ.get("SYNCSTORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


class RunningServer:
    def __init__(self, database_url: str):
        from syncstore_server.app import SyncServer
        from syncstore_server.auth import Secret

        self.database_url = database_url
        self.secret = Secret("running-server-tests-secret-" + "r" * 24, source="tests")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-sync-server", daemon=True)
        self._thread.start()
        self.server = SyncServer(database_url, secret=self.secret, host="127.0.0.1", port=0)
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(60)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}"

    def token(self, tenant: str) -> str:
        from syncstore_server.auth import mint_token

        return mint_token(self.secret, tenant=tenant)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"syncstore_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield make_conninfo(**{**conninfo_to_dict(ADMIN_URL), "dbname": name})
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@contextmanager
def running_server() -> Iterator[RunningServer]:
    with fresh_database() as url:
        server = RunningServer(url)
        try:
            yield server
        finally:
            server.close()
