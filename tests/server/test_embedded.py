"""The embedded PostgreSQL: started when no URL is given, with pgvector, stopped on exit."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import psycopg
import pytest

from syncstore.core import protocol as p
from syncstore.errors import CapabilityError

from syncstore_server import migrate
from syncstore_server.embedded import EmbeddedPostgres
from syncstore_server.store import open_store

from .helpers import ServerProcess, insert, new_id, site, stamp

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir():
    # As root the embedded PostgreSQL runs as another user, which must be able to
    # enter the data directory's parents (pytest's own tmp_path is private to root).
    root = Path(tempfile.mkdtemp(prefix="syncstore-embedded-"))
    root.chmod(0o755)
    try:
        yield root / "data"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def postmaster_pid(data_dir) -> int | None:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def start_or_skip(data_dir) -> EmbeddedPostgres:
    embedded = EmbeddedPostgres(data_dir)
    try:
        embedded.start()
    except CapabilityError as exc:
        pytest.skip(f"the embedded PostgreSQL cannot start here: {exc}")
    return embedded


def test_embedded_postgres_with_pgvector_round_trips_vectors(data_dir):
    embedded = start_or_skip(data_dir)
    try:
        with psycopg.connect(embedded.url) as conn:
            migrate.migrate(conn)
            kind = conn.execute(
                "SELECT format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = 'syncstore.agent_memory'::regclass AND attname = 'embedding'"
            ).fetchone()[0]
        assert kind == "vector"
        vector = np.array([0.1, -2.5, 1e-8, 3.25], dtype=np.float32).tobytes()
        row = new_id()

        async def main():
            async with open_store(embedded.url) as store:
                assert store.catalog.vector
                values = dict(agent_id="a", memory_type="knowledge_base", content="c", embedding=vector)
                await store.merge("t", site(1), [p.LocalTx(1, [insert(1, row, stamp(), table="agent_memory", **values)])])
                return await store.cells("t", "agent_memory", row), await store.read_log("t", 0)

        cells, (log, _) = asyncio.run(main())
        assert cells["embedding"].value == vector  # float32 bytes, exactly
        assert log[0][1].changes[0].cells["embedding"][0] == vector

        async def too_big():
            # Beyond pgvector's 16,000 dimensions: refused for good, the rest merged.
            huge = np.ones(16_001, dtype=np.float32).tobytes()
            values = dict(agent_id="a", memory_type="knowledge_base", content="c")
            async with open_store(embedded.url) as store:
                return await store.merge("t", site(1), [
                    p.LocalTx(2, [insert(2, new_id(), stamp(), table="agent_memory", embedding=huge, **values)]),
                    p.LocalTx(3, [insert(3, new_id(), stamp(), table="agent_memory", **values)]),
                ])  # fmt: skip

        result = asyncio.run(too_big())
        assert result.upto_seq == 3 and [(r.tx, r.code) for r in result.rejected] == [(2, "bad_value")]
        assert result.row_changes == 1
        assert postmaster_pid(data_dir) is not None
    finally:
        embedded.stop()
    assert postmaster_pid(data_dir) is None


def test_the_daemon_without_a_url_runs_on_the_embedded_postgres_and_stops_it(data_dir):
    start_or_skip(data_dir).stop()  # skip cleanly where it cannot run; warms the cluster up
    with ServerProcess("--data-dir", str(data_dir), env={"SYNCSTORE_SECRET": "", "SYNCSTORE_DATABASE_URL": ""},
                       dev=True) as server:  # fmt: skip
        assert postmaster_pid(data_dir) is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz", timeout=10) as response:
            assert response.status == 200
        assert server.terminate() == 0
        server.wait_for(re.compile("embedded PostgreSQL stopped"))
    assert postmaster_pid(data_dir) is None
