"""A replica file that is not the one the server has merged takes a new site id.

A copy of a replica file, or the file restored from an older backup, shares
the original's site id. The changes each writes afterwards reuse the same
sequence numbers: the server would keep whichever it merged first and skip
the other's as "already merged". When the sync client learns that this file
is such a copy (:mod:`syncstore.core.fingerprint`), :func:`take_new_site`
gives it a new site id in one transaction, and re-stamps the cells that its
changes after ``resend_after`` wrote with the new id (same clock stamps):
those changes are pushed again under the new id, so the server will hold
them with it, and so must this file. Cells other replicas wrote, and this
file's changes the server merged, keep their clocks.
"""

from __future__ import annotations

from typing import NamedTuple

from syncstore import schema
from syncstore.core.ids import new_site_id
from syncstore.core.merge import DELETED, Cell
from syncstore.replica import clocks
from syncstore.replica.store import Replica


class NewSite(NamedTuple):
    old: bytes
    new: bytes
    changes: int  # log entries after resend_after, now this site's to push


def take_new_site(replica: Replica, *, resend_after: int) -> NewSite:
    """Give ``replica``'s file a new site id (in the caller's transaction, or one of its own)."""
    conn = replica.connection
    with replica.transaction():
        old = replica.meta_get("site_id")
        new = new_site_id()
        entries = replica.changes(after=resend_after)
        # Per row, the clock each column was last written at by these changes.
        written: dict[tuple[str, str], dict[str, int]] = {}
        for entry in entries:
            columns = written.setdefault((entry.table, entry.id), {})
            for name in entry.values:
                if name != "id":
                    columns[name] = entry.hlc
        for (table, row_id), columns in written.items():
            _restamp_row(conn, schema.table(table), row_id, columns, old, new)
            _restamp_tombstone(conn, table, row_id, columns, old, new)
        conn.execute("update _ss_meta set value = ? where key = 'site_id'", (new,))
        replica.site_id = new
    return NewSite(old, new, len(entries))


def _restamp_row(conn, tbl: schema.Table, row_id: str, columns: dict[str, int], old: bytes, new: bytes) -> None:
    found = conn.execute(f"select _hlc, _site, _clocks from {tbl.name} where id = ?", (row_id,)).fetchone()
    if found is None:
        return
    names = (*tbl.column_names[1:], DELETED)
    held = clocks.column_clocks(names, (found[0], bytes(found[1])), found[2])
    changed = False
    for name, hlc in columns.items():
        if held.get(name) == (hlc, old):
            held[name] = (hlc, new)
            changed = True
    if changed:
        base_hlc, base_site, blob = clocks.compress(held)
        conn.execute(
            f"update {tbl.name} set _hlc = ?, _site = ?, _clocks = ? where id = ?", (base_hlc, base_site, blob, row_id)
        )


def _restamp_tombstone(conn, table: str, row_id: str, columns: dict[str, int], old: bytes, new: bytes) -> None:
    found = conn.execute("select hlc, site, cells from _ss_tombstones where tbl = ? and pk = ?", (table, row_id)).fetchone()
    if found is None:
        return
    hlc, site, blob = found[0], bytes(found[1]), found[2]
    if columns.get(DELETED) == hlc and site == old:
        site = new
    cells = clocks.decode_cells(blob)
    for name, stamp in columns.items():
        cell = cells.get(name)
        if cell is not None and (cell.hlc, cell.site) == (stamp, old):
            cells[name] = Cell(cell.value, stamp, new)
    conn.execute(
        "update _ss_tombstones set site = ?, cells = ? where tbl = ? and pk = ?",
        (site, clocks.encode_cells(cells), table, row_id),
    )
