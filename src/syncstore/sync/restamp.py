"""Re-stamping: bring a replica's clock back after the machine's clock ran ahead.

A hybrid logical clock never goes back: once the machine's time ran ahead,
every later write is stamped ahead too, even after the time is corrected. The
sync server defers changes stamped more than its drift cap ahead of its own
clock, so they wait in the change log until its time catches up, and the
replica refuses new local writes meanwhile (see :mod:`syncstore.core.hlc`).
:func:`restamp_pending` gives those changes new stamps from the corrected
clock, so they go out at once.

Only changes stamped past the limit (this machine's time plus the server's
cap) are re-stamped: the server refuses those, so no server or other replica
holds them, and changing their stamps here changes nothing anyone else has.
What re-stamping keeps:

- the order of the re-stamped writes among themselves (stamp ``n``-th
  smallest becomes ``base + n``), and their place after every version of the
  same rows they replaced (``base`` is above every other clock those rows and
  tombstones hold, and above the versions the writes saw);
- the rows' per-column clocks (``_hlc``/``_site``/``_clocks``) and the
  tombstones' clocks and kept cells: a cell holding a re-stamped write gets
  its new stamp, so the row and the log agree;
- the change log's own clocks, and the ``seen`` clocks of pending changes
  that name a re-stamped write (a later write saw it): the server compares
  ``seen`` with its own version to decide whether a write made a conflict, so
  a stale one would record a conflict that never happened;
- the replica's clock: set back to the newest stamp the file still holds,
  leaving out only this replica's own stamps past the limit (versions no server
  accepted), so every later local write is newer than everything it may
  replace.
"""

from __future__ import annotations

from typing import Any, Iterable

import msgspec

from syncstore import schema
from syncstore.core import hlc
from syncstore.core.merge import DELETED, Cell
from syncstore.errors import ClockDriftError
from syncstore.replica import clocks
from syncstore.replica.store import Replica
from syncstore.sync.state import SyncState


class Restamped(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`restamp_pending` did."""

    changes: int  # change log entries given new stamps
    pending: int  # ... of which not yet acknowledged (they go out with the next sync)
    rows: int  # rows and tombstones whose cells were rewritten
    limit_ms: int  # stamps past this millisecond were re-stamped
    clock_before: int  # the replica's clock before (a packed stamp)
    clock_after: int  # ... and after


def restamp_pending(replica: Replica, *, now_ms: int | None = None, max_drift_ms: int | None = None) -> Restamped:
    """Give new stamps, from this machine's clock, to the changes stamped
    more than ``max_drift_ms`` ahead of it (default: the server's cap when it
    told one, else the default cap), and set the replica's clock back.

    Correct the machine's clock first: a clock that still runs ahead of the
    server's time (as last measured) is refused with ClockDriftError. All in one
    local transaction; other connections to the file take the new clock at
    their next transaction.
    """
    state = SyncState(replica)
    now = hlc.wall_ms() if now_ms is None else now_ms
    server = state.server_time
    cap = max_drift_ms or (server.max_drift_ms if server is not None else hlc.DEFAULT_MAX_DRIFT_MS)
    # Measured ahead at the last connection, and not set back since: still wrong.
    offset = 0 if server is None else server.local_ms - server.server_ms
    if server is not None and offset > cap and now >= server.local_ms:
        raise ClockDriftError(
            stamp_ms=now,
            now_ms=now - offset,
            max_drift_ms=cap,
            message=(
                f"this machine's clock was {offset / 1000:.1f} s ahead of the sync server's when it last "
                f"connected, and has not been set back since: correct it first, then re-stamp"
            ),
        )
    limit_ms = now + cap
    limit = ((limit_ms + 1) << hlc.COUNTER_BITS) - 1  # the last stamp of the limit's millisecond
    site = replica.site_id
    conn = replica.connection
    with replica.transaction():
        before = replica.last_stamp()
        acked = state.acked_seq
        future = list(conn.execute("select seq, tbl, pk, hlc from _ss_changes where hlc > ? order by seq", (limit,)))
        old = sorted({stamp for _, _, _, stamp in future})
        touched = sorted({(tbl, pk) for _, tbl, pk, _ in future})
        moved = set(old)

        def stays(clock: tuple[int, bytes]) -> bool:
            return not (clock[1] == site and clock[0] in moved)

        # Above every clock the touched rows keep, and every version the
        # re-stamped writes (or later ones) saw.
        floor = now << hlc.COUNTER_BITS
        for tbl, pk in touched:
            floor = max([floor, *(c for c, s in _row_clocks(conn, tbl, pk) if stays((c, s)))])
        for (blob,) in conn.execute("select seen from _ss_changes where seq > ? and seen is not null", (acked,)):
            floor = max([floor, *(c for c, s in clocks.decode_seen(blob).values() if stays((c, s)))])
        base = floor + 1
        mapping = {stamp: base + n for n, stamp in enumerate(old)}

        def remap(clock: tuple[int, bytes]) -> tuple[int, bytes]:
            return (mapping[clock[0]], clock[1]) if clock[1] == site and clock[0] in mapping else clock

        conn.executemany("update _ss_changes set hlc = ? where seq = ?", [(mapping[h], seq) for seq, _, _, h in future])
        _remap_seen(conn, acked, remap)
        rows = sum(_remap_row(conn, tbl, pk, remap) for tbl, pk in touched)
        after = max(_newest_kept(conn, site, limit), max(mapping.values(), default=0))
        if after < before:
            conn.execute("update _ss_clock set last_hlc = ? where id = 1", (after,))
        else:
            after = before
        state.keep_server_time(None)  # the clock is back: local writes go through again
        replica.clock.reset(after)
    return Restamped(
        changes=len(future),
        pending=sum(1 for seq, *_ in future if seq > acked),
        rows=rows,
        limit_ms=limit_ms,
        clock_before=before,
        clock_after=after,
    )


def _row_clocks(conn: Any, table: str, row_id: str) -> list[tuple[int, bytes]]:
    """Every clock a row (live or a tombstone) holds."""
    tbl = schema.table(table)
    out: list[tuple[int, bytes]] = []
    found = conn.execute(f"select _hlc, _site, _clocks from {tbl.name} where id = ?", (row_id,)).fetchone()
    if found is not None:
        out.append((found[0], found[1]))
        out.extend(clocks.overrides(found[2]).values())
    stone = conn.execute("select hlc, site, cells from _ss_tombstones where tbl = ? and pk = ?", (tbl.name, row_id)).fetchone()
    if stone is not None:
        out.append((stone[0], stone[1]))
        out.extend((cell.hlc, cell.site) for cell in clocks.decode_cells(stone[2]).values())
    return out


def _remap_seen(conn: Any, acked: int, remap: Any) -> None:
    updates = []
    for seq, blob in conn.execute("select seq, seen from _ss_changes where seq > ? and seen is not null", (acked,)):
        seen = clocks.decode_seen(blob) or {}
        new = {name: remap(tuple(clock)) for name, clock in seen.items()}
        if new != {name: tuple(clock) for name, clock in seen.items()}:
            updates.append((clocks.encode_seen(new), seq))
    conn.executemany("update _ss_changes set seen = ? where seq = ?", updates)


def _remap_row(conn: Any, table: str, row_id: str, remap: Any) -> int:
    """Rewrite the clocks of a row and its tombstone; how many were changed."""
    tbl = schema.table(table)
    changed = 0
    found = conn.execute(f"select _hlc, _site, _clocks from {tbl.name} where id = ?", (row_id,)).fetchone()
    if found is not None:
        names = (*tbl.column_names[1:], DELETED)
        current = clocks.column_clocks(names, (found[0], found[1]), found[2])
        new = {name: remap(clock) for name, clock in current.items()}
        if new != current:
            base_hlc, base_site, blob = clocks.compress(new)
            conn.execute(
                f"update {tbl.name} set _hlc = ?, _site = ?, _clocks = ? where id = ?", (base_hlc, base_site, blob, row_id)
            )
            changed += 1
    stone = conn.execute(
        "select hlc, site, cells from _ss_tombstones where tbl = ? and pk = ?", (tbl.name, row_id)
    ).fetchone()
    if stone is not None:
        hlc_, site_ = remap((stone[0], stone[1]))
        cells = clocks.decode_cells(stone[2])
        new_cells = {name: Cell(cell.value, *remap((cell.hlc, cell.site))) for name, cell in cells.items()}
        if (hlc_, site_) != (stone[0], stone[1]) or new_cells != cells:
            conn.execute(
                "update _ss_tombstones set hlc = ?, site = ?, cells = ? where tbl = ? and pk = ?",
                (hlc_, site_, clocks.encode_cells(new_cells), tbl.name, row_id),
            )
            changed += 1
    return changed


def _newest_kept(conn: Any, site: bytes, limit: int) -> int:
    """The newest clock the file holds, leaving out this replica's own stamps
    past ``limit`` (versions no server accepted)."""

    def kept(found: Iterable[tuple[int, bytes]]) -> int:
        return max((c for c, s in found if s != site or c <= limit), default=0)

    newest = conn.execute("select coalesce(max(hlc), 0) from _ss_changes where hlc <= ?", (limit,)).fetchone()[0]
    for tbl in schema.TABLES.values():
        newest = max(
            newest,
            conn.execute(
                f"select coalesce(max(_hlc), 0) from {tbl.name} where _site != ? or _hlc <= ?", (site, limit)
            ).fetchone()[0],
        )
        for (blob,) in conn.execute(f"select _clocks from {tbl.name} where _clocks is not null"):
            newest = max(newest, kept(clocks.overrides(blob).values()))
    for stone_hlc, stone_site, blob in conn.execute("select hlc, site, cells from _ss_tombstones"):
        newest = max(newest, kept([(stone_hlc, stone_site)]), kept((c.hlc, c.site) for c in clocks.decode_cells(blob).values()))
    return newest
