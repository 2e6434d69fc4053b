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


@pytest.fixture
def sync_server(database_url):
    """``syncstore server run`` on a fresh migrated database; stop() and start() keep its port."""
    import psycopg

    from syncstore_server import migrate

    from fault.processes import ServerProcess

    with psycopg.connect(database_url) as conn:
        migrate.migrate(conn)
    server = ServerProcess(database_url)
    server.start()
    try:
        yield server
    finally:
        if server.running:
            server.kill()


@pytest.fixture
def sync_token(tenant) -> str:
    from fault.processes import token

    return token(tenant)
