"""Local schema migrations: numbered SQL files, a history table, rollback of the last.

Each migration is ``migrations/NNNN_name.up.sql`` with an optional
``NNNN_name.down.sql``. Versions need not be contiguous, only increasing. A
replica records what it applied in ``_ss_migrations``; opening applies what is
missing, in order, each in its own transaction. A replica whose history names a
version this library does not know was made by a newer syncstore and is
refused rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import apsw

from syncstore.errors import SchemaVersionError
from syncstore.schema import now_iso

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")

HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS _ss_migrations (
    version INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str | None


def available() -> list[Migration]:
    folder = resources.files("syncstore.replica") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if not match:
            continue
        version, name = int(match.group(1)), match.group(2)
        down_file = folder / f"{match.group(1)}_{name}.down.sql"
        down = down_file.read_text() if down_file.is_file() else None
        found.append(Migration(version, name, entry.read_text(), down))
    found.sort(key=lambda m: m.version)
    return found


LATEST = available()[-1].version


def applied(conn: apsw.Connection) -> list[tuple[int, str, str]]:
    exists = conn.execute("select 1 from sqlite_schema where name = '_ss_migrations'").fetchone()
    if not exists:
        return []
    return list(conn.execute("select version, name, applied_at from _ss_migrations order by version"))


def check_not_newer(conn: apsw.Connection, path: str) -> None:
    known = {m.version for m in available()}
    for version, name, _ in applied(conn):
        if version not in known:
            raise SchemaVersionError(
                f"{path}: made by a newer syncstore (migration {version} {name!r} is unknown to "
                f"this library, which knows up to {LATEST}); upgrade syncstore to open it"
            )


def migrate(conn: apsw.Connection, path: str) -> list[Migration]:
    """Apply every missing migration; return what was applied."""
    check_not_newer(conn, path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(HISTORY_DDL)
        done = {row[0] for row in applied(conn)}
        todo = [m for m in available() if m.version not in done]
        for migration in todo:
            conn.execute(migration.up)
            conn.execute(
                "insert into _ss_migrations (version, name, applied_at) values (?, ?, ?)",
                (migration.version, migration.name, now_iso()),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return todo


def rollback_last(conn: apsw.Connection, path: str) -> Migration:
    """Undo the most recent migration, if it can be undone."""
    check_not_newer(conn, path)
    history = applied(conn)
    if not history:
        raise SchemaVersionError(f"{path}: no migration to roll back")
    version = history[-1][0]
    migration = next(m for m in available() if m.version == version)
    if migration.down is None:
        raise SchemaVersionError(f"{path}: migration {version} {migration.name!r} cannot be rolled back")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(migration.down)
        conn.execute("delete from _ss_migrations where version = ?", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return migration
