"""Local schema migrations: numbered SQL files, a history table, rollback of the last.

Each migration is ``migrations/NNNN_name.up.sql`` with an optional
``NNNN_name.down.sql``. Versions need not be contiguous, only increasing. A
replica records what it applied in ``_ss_migrations``; opening applies what is
missing, in order, all in one transaction, so a failing step leaves the replica
exactly as it was. A replica whose history names a version this library does
not know was made by a newer syncstore and is refused rather than guessed at.

Every function takes ``known`` (the migrations this library ships, by default)
so that a test can run a longer history through the same code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Sequence

import apsw

from syncstore.errors import NotAReplicaError, SchemaVersionError
from syncstore.schema import now_iso

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")
HISTORY = "_ss_migrations"

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


_SHIPPED = available()
LATEST = _SHIPPED[-1].version


def _known(known: Sequence[Migration] | None) -> Sequence[Migration]:
    return _SHIPPED if known is None else sorted(known, key=lambda m: m.version)


def applied(conn: apsw.Connection) -> list[tuple[int, str, str]]:
    exists = conn.execute("select 1 from sqlite_schema where name = ?", (HISTORY,)).fetchone()
    if not exists:
        return []
    return list(conn.execute("select version, name, applied_at from _ss_migrations order by version"))


def check_is_replica(conn: apsw.Connection, path: str, *, allow_empty: bool) -> None:
    """Refuse a SQLite file some other program made (and an empty one unless allowed)."""
    names = {row[0] for row in conn.execute("select name from sqlite_schema where type = 'table'")}
    if names and HISTORY not in names:
        raise NotAReplicaError(
            f"{path}: a SQLite database, but not a syncstore replica "
            f"(it has tables {', '.join(sorted(names)[:5])}); use a new file"
        )
    if not names and not allow_empty:
        raise NotAReplicaError(f"{path}: empty file, not a syncstore replica")


def check_not_newer(conn: apsw.Connection, path: str, *, known: Sequence[Migration] | None = None) -> None:
    versions = {m.version for m in _known(known)}
    for version, name, _ in applied(conn):
        if version not in versions:
            raise SchemaVersionError(
                f"{path}: made by a newer syncstore (migration {version} {name!r} is unknown to "
                f"this library, which knows up to {max(versions)}); upgrade syncstore to open it"
            )


def pending(conn: apsw.Connection, *, known: Sequence[Migration] | None = None) -> list[Migration]:
    done = {row[0] for row in applied(conn)}
    return [m for m in _known(known) if m.version not in done]


def migrate(conn: apsw.Connection, path: str, *, known: Sequence[Migration] | None = None) -> list[Migration]:
    """Apply every missing migration, in one transaction; return what was applied."""
    check_not_newer(conn, path, known=known)
    if applied(conn) and not pending(conn, known=known):
        return []  # up to date: no write lock needed, so opening never waits for a writer
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(HISTORY_DDL)
        # Read the history again inside the write lock: another process may have
        # migrated the file between our check and our lock.
        todo = pending(conn, known=known)
        for migration in todo:
            _run(conn, path, migration, migration.up, "apply")
            conn.execute(
                "insert into _ss_migrations (version, name, applied_at) values (?, ?, ?)",
                (migration.version, migration.name, now_iso()),
            )
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return todo


def rollback_last(conn: apsw.Connection, path: str, *, known: Sequence[Migration] | None = None) -> Migration:
    """Undo the most recent migration, if it can be undone."""
    check_not_newer(conn, path, known=known)
    history = applied(conn)
    if not history:
        raise SchemaVersionError(f"{path}: no migration to roll back")
    version = history[-1][0]
    migration = next(m for m in _known(known) if m.version == version)
    if migration.down is None:
        raise SchemaVersionError(f"{path}: migration {version} {migration.name!r} cannot be rolled back")
    conn.execute("BEGIN IMMEDIATE")
    try:
        _run(conn, path, migration, migration.down, "roll back")
        conn.execute("delete from _ss_migrations where version = ?", (version,))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return migration


def _run(conn: apsw.Connection, path: str, migration: Migration, sql: str, verb: str) -> None:
    try:
        conn.execute(sql)
    except (apsw.BusyError, apsw.LockedError):
        raise  # the caller reports a lock as a lock
    except apsw.Error as exc:
        raise SchemaVersionError(
            f"{path}: could not {verb} migration {migration.version} {migration.name!r}: {exc}"
        ) from None


def _rollback(conn: apsw.Connection) -> None:
    # Some errors (a full disk, an I/O error) end the transaction themselves;
    # a second ROLLBACK would hide the real error behind "no transaction".
    if conn.in_transaction:
        conn.execute("ROLLBACK")
