"""The version of the synced tables a replica file's rows were written with.

``_ss_meta`` key ``synced_schema`` records it (see
:data:`syncstore.schema.SCHEMA_VERSION`). A library of a newer version that
opens the file knows columns the rows were written without: their cells are
"nobody wrote this" (the column's default at the zero clock, as a replica
fills a cell no change has brought), never a write at the row's insert clock,
which would tie with the server's own cell of that column and could keep a
stale value for good. The sync client then takes those columns from the
server by snapshot (``SyncState.schema_met``). The number never goes down: a
file a newer library wrote keeps its number when an older one opens it.
"""

from __future__ import annotations

import apsw

from syncstore import schema
from syncstore.replica import clocks

KEY = "synced_schema"


def _recorded(conn: apsw.Connection) -> int | None:
    found = conn.execute("select value from _ss_meta where key = ?", (KEY,)).fetchone()
    return None if found is None else int(found[0])


def take(conn: apsw.Connection) -> None:
    """Record this library's version in the file, first marking the cells of
    the columns it knows and the file's rows were written without."""
    current = schema.SCHEMA_VERSION
    recorded = _recorded(conn)
    if recorded is not None and recorded >= current:
        return  # the usual case: no write, so opening never waits for a writer
    conn.execute("BEGIN IMMEDIATE")
    try:
        recorded = _recorded(conn)  # again, inside the write lock
        if recorded is None:
            # A file from before versions were recorded was written at version
            # 1; a new one (no clock yet) was written by nobody.
            used = conn.execute("select last_hlc from _ss_clock where id = 1").fetchone()
            logged = conn.execute("select 1 from _ss_changes limit 1").fetchone()
            recorded = 1 if (used and used[0]) or logged else current
        if recorded < current:
            for name, columns in schema.added_after(recorded).items():
                tbl = schema.TABLES[name]
                if tbl.since <= recorded:  # (a newer table's rows were never written here)
                    _unwritten(conn, tbl, columns)
        conn.execute(
            "insert or replace into _ss_meta (key, value) values (?, ?)", (KEY, max(current, recorded))
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _unwritten(conn: apsw.Connection, tbl: schema.Table, columns: tuple[schema.Column, ...]) -> None:
    """Every row's cells of ``columns``: the default, at the zero clock."""
    names = [c.name for c in columns]
    assignments = "".join(f"{c.name} = ?, " for c in columns)
    defaults = [c.default for c in columns]
    rows = list(conn.execute(f"select id, _clocks from {tbl.name}"))
    conn.executemany(
        f"update {tbl.name} set {assignments}_clocks = ? where id = ?",
        [(*defaults, clocks.with_writes(blob, names, clocks.ZERO), row_id) for row_id, blob in rows],
    )
