"""Conflict records on the client: list, show, resolve; and the pushes the server refused.

A conflict record arrives with the server transaction that made it and is
kept in ``_ss_conflicts``. Resolving one is an ordinary local write of the
chosen value (so it syncs like any edit and wins over both versions, being
newer), plus a local mark and a ``Resolved`` message to the server: at once
on an open background connection, else on the next connection. Until the
server confirms it read it, it counts as pending (``pending_resolutions``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from syncstore import schema
from syncstore.core import merge
from syncstore.core import protocol as p
from syncstore.errors import NotFoundError, ValidationError
from syncstore.replica.store import Replica

KEEP = ("winner", "loser")
_MISSING: Any = object()


class LocalConflict(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    table: str
    row_id: str
    column: str
    winner_value: Any
    winner_hlc: int
    winner_site: bytes
    loser_value: Any
    loser_hlc: int
    loser_site: bytes
    incoming_won: bool
    created_at: str
    server_seq: int
    received_at: str
    resolved_at: str | None = None
    resolution: str | None = None
    reported: bool = False


class Rejected(msgspec.Struct, frozen=True, kw_only=True):
    tx: int
    code: str
    message: str
    rejected_at: str
    changes: list[p.LocalChange]  # as they were pushed, values and clocks
    reverted_at: str | None = None  # when the rows went back to the server's state here (None: not yet)


_COLUMNS = (
    "id, tbl, row_id, col, winner_value, winner_hlc, winner_site, loser_value, loser_hlc, loser_site, "
    "incoming_won, created_at, server_seq, received_at, resolved_at, resolution, reported"
)


def _record(row: tuple[Any, ...]) -> LocalConflict:
    (cid, tbl, row_id, col, wv, wh, ws, lv, lh, ls, won, created, seq, received, resolved, resolution, reported) = row
    return LocalConflict(
        id=cid, table=tbl, row_id=row_id, column=col,
        winner_value=wv, winner_hlc=wh, winner_site=ws,
        loser_value=lv, loser_hlc=lh, loser_site=ls,
        incoming_won=bool(won), created_at=created, server_seq=seq, received_at=received,
        resolved_at=resolved, resolution=resolution, reported=bool(reported),
    )  # fmt: skip


def list_conflicts(
    replica: Replica,
    *,
    include_resolved: bool = False,
    table: str | None = None,
    row_id: str | None = None,
    limit: int | None = 100,
) -> list[LocalConflict]:
    """Conflict records, newest first; open ones only unless ``include_resolved``."""
    clauses, params = [], []
    if not include_resolved:
        clauses.append("resolved_at is null")
    if table is not None:
        schema.table(table)
        clauses.append("tbl = ?")
        params.append(table)
    if row_id is not None:
        clauses.append("row_id = ?")
        params.append(row_id)
    sql = f"select {_COLUMNS} from _ss_conflicts"
    if clauses:
        sql += " where " + " and ".join(clauses)
    sql += " order by server_seq desc, id"
    if limit is not None:
        sql += " limit ?"
        params.append(limit)
    return [_record(row) for row in replica.connection.execute(sql, params)]


def get_conflict(replica: Replica, conflict_id: str) -> LocalConflict:
    """One record by id, or by a prefix of its id that names only one."""
    rows = list(
        replica.connection.execute(
            f"select {_COLUMNS} from _ss_conflicts where id = ? or id like ? escape '\\' limit 2",
            (conflict_id, conflict_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
        )
    )
    exact = [row for row in rows if row[0] == conflict_id]
    if exact:
        return _record(exact[0])
    if len(rows) > 1:
        raise ValidationError(f"conflict id prefix {conflict_id!r} names more than one record; give more of it")
    if not rows:
        raise NotFoundError("conflicts", conflict_id)
    return _record(rows[0])


def resolve_conflict(replica: Replica, conflict_id: str, *, keep: str | None = None, value: Any = _MISSING) -> LocalConflict:
    """Settle a conflict: keep the winner's or the loser's value, or write a new one.

    The chosen value is written now, as a local edit of the row, so it reaches
    every replica; the record is marked resolved here and reported to the server.
    """
    if (keep is None) == (value is _MISSING):
        raise ValidationError("give exactly one of keep ('winner' or 'loser') or value")
    if keep is not None and keep not in KEEP:
        raise ValidationError(f"keep must be 'winner' or 'loser', not {keep!r}")
    with replica.transaction():
        record = get_conflict(replica, conflict_id)
        if record.resolved_at is not None:
            raise ValidationError(f"conflict {record.id} was already resolved ({record.resolution}) at {record.resolved_at}")
        chosen = value if keep is None else (record.winner_value if keep == "winner" else record.loser_value)
        _write(replica, record, chosen)
        replica.connection.execute(
            "update _ss_conflicts set resolved_at = ?, resolution = ?, reported = 0 where id = ?",
            (schema.now_iso(), keep or "value", record.id),
        )
        resolved = get_conflict(replica, record.id)
    # A background sync of this store reports it on its open connection now
    # (a resolution that wrote nothing, keeping a live row, commits no change
    # that would wake it).
    handle = getattr(replica, "_sync_handle", None)
    if handle is not None:
        handle.wake()
    return resolved


def _write(replica: Replica, record: LocalConflict, chosen: Any) -> None:
    if record.column == merge.DELETED:
        # A delete competed with an edit. Keeping the delete deletes the row
        # again; keeping the edit would need the whole row, which a deleted
        # row no longer has here.
        if chosen in (1, True):
            if replica.get(record.table, record.row_id) is not None:
                replica.delete(record.table, record.row_id)
            return
        if replica.get(record.table, record.row_id) is None:
            raise ValidationError(
                "the row is deleted; to keep it, create it again (its values are gone with the delete)",
                table=record.table,
                field=merge.DELETED,
            )
        return  # the row is live, which is what was chosen
    if replica.get(record.table, record.row_id) is None:
        raise NotFoundError(record.table, record.row_id)
    replica.update(record.table, record.row_id, {record.column: chosen})


def list_rejected(replica: Replica, *, limit: int | None = 100) -> list[Rejected]:
    """Pushes the server refused for good, newest first, with what they carried
    (the rows they wrote are returned to the server's state here)."""
    decode = msgspec.msgpack.Decoder(p.LocalTx).decode
    sql = "select tx, code, message, rejected_at, changes, reverted_at from _ss_sync_rejected order by tx desc"
    params: list[Any] = []
    if limit is not None:
        sql += " limit ?"
        params.append(limit)
    return [
        Rejected(tx=tx, code=code, message=message, rejected_at=at, changes=decode(blob).changes, reverted_at=reverted)
        for tx, code, message, at, blob, reverted in replica.connection.execute(sql, params)
    ]
