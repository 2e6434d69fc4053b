"""Versioned server schema migrations with a recorded history.

Each migration is a pair of SQL files in ``migrations/``: ``NNNN_name.up.sql``
and, where the change can be undone, ``NNNN_name.down.sql``. Applied ones are
recorded in ``syncstore.schema_migrations`` with a checksum of the up file.
On start the server checks the history: a database migrated by a newer server,
or a migration whose file changed after it ran, stops it with a clear error.

Each migration runs in its own transaction together with its history row,
under a transaction-level advisory lock, so several server instances starting
at once apply each step exactly once.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import psycopg

from syncstore.errors import SchemaVersionError

from syncstore_server.tables import SCHEMA

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")
_LOCK = (0x5353, 1)  # advisory lock key for migrations: ("SS", 1)

HISTORY_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


class Migration(NamedTuple):
    version: int
    name: str
    up: str
    down: str | None

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.encode()).hexdigest()


class Applied(NamedTuple):
    version: int
    name: str
    checksum: str
    applied_at: datetime


class Status(NamedTuple):
    current: int  # highest applied version (0: none)
    latest: int  # highest version this server knows
    applied: list[Applied]
    pending: list[Migration]


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations shipped with this server, in version order."""
    ups: dict[int, tuple[str, str]] = {}
    downs: dict[int, str] = {}
    for path in directory.iterdir():
        found = _FILE.match(path.name)
        if not found:
            continue
        version, name, kind = int(found[1]), found[2], found[3]
        if kind == "up":
            ups[version] = (name, path.read_text())
        else:
            downs[version] = path.read_text()
    versions = sorted(ups)
    # Versions only increase; numbers may be skipped (work in progress elsewhere
    # reserves its own), as the replica's migrations allow.
    if any(v < 1 for v in versions) or len(versions) != len(set(versions)) or set(downs) - set(ups):
        raise SchemaVersionError(f"server migrations must be numbered 1, 2, ... once each with an up file, found {versions}")
    return [Migration(v, ups[v][0], ups[v][1], downs.get(v)) for v in versions]


def history(conn: psycopg.Connection) -> list[Applied]:
    found = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.schema_migrations",)
    ).fetchone()
    if not found or not found[0]:
        return []
    rows = conn.execute(
        f"SELECT version, name, checksum, applied_at FROM {SCHEMA}.schema_migrations ORDER BY version"
    ).fetchall()
    return [Applied(*row) for row in rows]


def status(conn: psycopg.Connection, *, known: list[Migration] | None = None) -> Status:
    """Where the database stands; raises SchemaVersionError if it cannot be used."""
    known = available() if known is None else known
    applied = history(conn)
    by_version = {m.version: m for m in known}
    for row in applied:
        migration = by_version.get(row.version)
        if migration is None:
            raise SchemaVersionError(
                f"the database has server schema version {row.version} ({row.name}), newer than this "
                f"server knows (up to {max((m.version for m in known), default=0)}): upgrade syncstore"
            )
        if migration.checksum != row.checksum:
            raise SchemaVersionError(
                f"server migration {row.version} ({row.name}) differs from the one applied to this database: "
                f"the migration files were changed after they ran"
            )
    done = {row.version for row in applied}
    pending = [m for m in known if m.version not in done]
    current = max(done, default=0)
    return Status(current, max((m.version for m in known), default=0), applied, pending)


def migrate(conn: psycopg.Connection, *, target: int | None = None) -> list[Migration]:
    """Apply pending migrations up to ``target`` (all by default); return those applied."""
    known = available()
    target = known[-1].version if target is None and known else (target or 0)
    done: list[Migration] = []
    conn.autocommit = True
    with conn.transaction():
        # IF NOT EXISTS is not safe against a concurrent creator: take the lock first.
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _LOCK)
        conn.execute(HISTORY_DDL)
    for migration in known:
        if migration.version > target:
            break
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _LOCK)
            if migration.version in {row.version for row in status(conn, known=known).applied}:
                continue  # another instance applied it while we waited
            conn.execute(migration.up)
            conn.execute(
                f"INSERT INTO {SCHEMA}.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        done.append(migration)
    return done


def rollback(conn: psycopg.Connection, *, target: int) -> list[Migration]:
    """Undo applied migrations above ``target``, newest first; return those undone."""
    known = {m.version: m for m in available()}
    conn.autocommit = True
    undone: list[Migration] = []
    for row in reversed(status(conn).applied):
        if row.version <= target:
            break
        migration = known[row.version]
        if migration.down is None:
            raise SchemaVersionError(f"server migration {row.version} ({row.name}) cannot be undone")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _LOCK)
            conn.execute(migration.down)
            conn.execute(f"DELETE FROM {SCHEMA}.schema_migrations WHERE version = %s", (row.version,))
        undone.append(migration)
    return undone


def check(conn: psycopg.Connection) -> Status:
    """Refuse a database that is not at this server's version."""
    current = status(conn)
    if current.pending:
        names = ", ".join(f"{m.version} ({m.name})" for m in current.pending)
        raise SchemaVersionError(
            f"the database is at server schema version {current.current}; pending: {names}. "
            f"Run `syncstore server migrate`"
        )
    return current
