"""Fixtures for the fault tests: real server processes, real PostgreSQL, replicas in files.

Each test gets a new migrated database on the test PostgreSQL (or a private
cluster it may restart), its own tenant, and replicas in its own folder;
everything started is stopped afterwards, even when the test fails.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator

import psycopg
import pytest

from syncstore_server import migrate

from .processes import token
from .traffic import Client

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def migrate_url(url: str) -> str:
    with psycopg.connect(url) as conn:
        migrate.migrate(conn)
    return url


@pytest.fixture
def migrated(database_url: str) -> str:
    return migrate_url(database_url)


@pytest.fixture
def tenant() -> str:
    return f"fault{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clients(tmp_path, tenant) -> Iterator[Callable[..., Client]]:
    """A factory of writing, syncing replicas; every one is closed afterwards."""
    made: list[Client] = []

    def make(url: str, name: str, **options: Any) -> Client:
        client = Client(tmp_path / f"{name}.db", url, token(tenant), seed=len(made), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
