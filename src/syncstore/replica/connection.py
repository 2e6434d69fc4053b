"""Opening the replica file with apsw, with the settings every connection needs."""

from __future__ import annotations

from typing import Callable

import apsw
import apsw.bestpractice

from syncstore.errors import NotAReplicaError, ReplicaError, ReplicaLockedError

DEFAULT_BUSY_TIMEOUT_MS = 5_000


class Capabilities:
    """What this process can do with SQLite; reported by ``syncstore doctor``."""

    def __init__(self, *, vector: bool, vector_version: str | None, vector_problem: str | None):
        self.vector = vector
        self.vector_version = vector_version
        self.vector_problem = vector_problem


def load_sqlite_vec(conn: apsw.Connection) -> Capabilities:
    """Load sqlite-vec where it loads; otherwise say why, and carry on without it."""
    try:
        import sqlite_vec
    except ImportError as exc:
        return Capabilities(vector=False, vector_version=None, vector_problem=f"sqlite-vec is not installed ({exc})")
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        (version,) = conn.execute("select vec_version()").fetchone()
    except (apsw.Error, OSError, AttributeError) as exc:
        return Capabilities(vector=False, vector_version=None, vector_problem=f"sqlite-vec did not load: {exc}")
    return Capabilities(vector=True, vector_version=version, vector_problem=None)


def replica_error(path: str, exc: apsw.Error) -> ReplicaError:
    """The syncstore error for an apsw error on the replica file: one clear line."""
    if isinstance(exc, (apsw.BusyError, apsw.LockedError)):
        return ReplicaLockedError(f"{path}: the replica is locked by another process; try again ({exc})")
    if isinstance(exc, (apsw.NotADBError, apsw.CorruptError)):
        return NotAReplicaError(f"{path}: not a SQLite database, or corrupt ({exc})")
    if isinstance(exc, apsw.CantOpenError):
        return ReplicaError(f"{path}: cannot open the file ({exc})")
    if isinstance(exc, apsw.ReadOnlyError):
        return ReplicaError(f"{path}: the file is read-only ({exc})")
    return ReplicaError(f"{path}: {exc}")


def connect(
    path: str,
    *,
    readonly: bool = False,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    check: Callable[[apsw.Connection], None] | None = None,
) -> tuple[apsw.Connection, Capabilities]:
    """Open ``path`` with WAL, a busy timeout and the other recommended settings.

    ``check`` runs before any setting that changes the file (WAL is recorded in
    the file itself), so a caller can refuse another program's database while
    it is still untouched."""
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    conn = None
    try:
        conn = apsw.Connection(path, flags=flags)
        conn.set_busy_timeout(busy_timeout_ms)
        # Touch the file now so a non-database fails here with a clear error.
        conn.execute("select count(*) from sqlite_schema").fetchone()
        if check is not None:
            check(conn)
        apsw.bestpractice.connection_wal(conn)
        apsw.bestpractice.connection_dqs(conn)
        apsw.bestpractice.connection_recursive_triggers(conn)
        if not readonly:
            # With WAL, NORMAL keeps every commit through a killed process; only a
            # power cut can lose the last few commits. FULL would fsync each one.
            conn.pragma("synchronous", "NORMAL")
        conn.pragma("temp_store", "MEMORY")
    except apsw.Error as exc:
        if conn is not None:
            conn.close()
        raise replica_error(path, exc) from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn, load_sqlite_vec(conn)
