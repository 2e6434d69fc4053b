"""Fixtures for the console tests: consoles over real replicas, a real sync
server process, and the system's headless Chromium.

The browser tests never skip in CI: there ``.ci/run`` installs chromium and
chromium-driver first, and a missing browser fails the run loudly.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable, Iterator

import pytest

from .running import Browser, ConsoleThread, browser_available


@pytest.fixture
def console_for() -> Iterator[Callable[..., ConsoleThread]]:
    """A factory: the console app over a store, served on a free port; stopped afterwards."""
    made: list[ConsoleThread] = []

    def make(store: Any, **options: Any) -> ConsoleThread:
        console = ConsoleThread(store, **options).start()
        made.append(console)
        return console

    yield make
    for console in made:
        console.stop()


@pytest.fixture
def console(store, console_for) -> ConsoleThread:
    return console_for(store)


@pytest.fixture
def client(console):
    with console.client() as opened:
        yield opened


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not browser_available():
        message = "the browser tests need /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    opened = Browser()
    try:
        yield opened
    finally:
        opened.quit()


@pytest.fixture
def browser(chromium) -> Browser:
    """The module's browser on a blank page, its log emptied: what a test reads
    of the page's errors is its own (the last test's console has stopped)."""
    chromium.go("about:blank")
    chromium.errors()
    return chromium


# --- a real sync server ------------------------------------------------------------


@pytest.fixture
def tenant() -> str:
    return f"console{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def module_server():
    """One ``syncstore server run`` for a module's tests, on a fresh migrated database
    (each test syncs as a tenant of its own, so they never see each other's rows)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from syncstore_server import migrate

    from fault.processes import ServerProcess

    admin = os.environ.get("SYNCSTORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"syncstore_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = make_conninfo(**{**conninfo_to_dict(admin), "dbname": name})
    try:
        with psycopg.connect(url) as conn:
            migrate.migrate(conn)
        server = ServerProcess(url)
        server.start()
        try:
            yield server
        finally:
            if server.running:
                server.kill()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def sync_server(module_server):
    """The module's server, running (a test that stopped it and failed leaves it stopped);
    stop() and start() keep its port."""
    if not module_server.running:
        module_server.start()
    return module_server


@pytest.fixture
def sync_token(tenant) -> str:
    from fault.processes import token

    return token(tenant)
