"""Fixtures every suite shares: replicas in temporary folders, fresh PostgreSQL databases."""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import HealthCheck, settings

import syncstore

# Bounded in CI; set HYPOTHESIS_PROFILE=thorough for a long local run.
settings.register_profile("ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ADMIN_URL = os.environ.get("SYNCSTORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def replica_path(tmp_path):
    return str(tmp_path / "replica.db")


@pytest.fixture
def store(replica_path):
    with syncstore.open(replica_path) as opened:
        yield opened


def _with_database(url: str, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo(**params)


@pytest.fixture
def fresh_database():
    """A factory of new, empty PostgreSQL databases on the test server; all dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    made: list[str] = []

    def make() -> str:
        name = f"syncstore_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        made.append(name)
        return _with_database(ADMIN_URL, name)

    yield make
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in made:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def database_url(fresh_database):
    """One new, empty PostgreSQL database for this test."""
    return fresh_database()
