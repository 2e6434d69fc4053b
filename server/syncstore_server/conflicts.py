"""Conflict records on the server: list them, show one, resolve one.

A conflict record says that two writes to one cell were made without seeing
each other, which value won by last-write-wins and which lost. Resolving one
by hand either keeps the winner (nothing to write) or writes the chosen value
(the loser's, or a new one) as a new write of the server's own site, through
the same merge as every push: it goes into the log and reaches every replica
of the tenant. The record is marked resolved in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import msgspec

from syncstore import schema
from syncstore.core import hlc as hlc_mod
from syncstore.core import protocol as p
from syncstore.core.merge import DELETED
from syncstore.errors import NotFoundError, ValidationError

from syncstore_server.store import SCHEMA, ChangeStore

KEEP = ("winner", "loser")
_UNSET: Any = object()

_COLUMNS = (
    "id::text, tenant, seq, tbl, row_id, col, winner_value, winner_hlc, winner_site, loser_value, loser_hlc, "
    "loser_site, incoming_won, created_at, resolved_at, resolved_by"
)


class ConflictRow(NamedTuple):
    id: str
    tenant: str
    seq: int  # the log position of the merge that made it
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
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON: sites as hex, times as ISO text, bytes values as hex."""
        out = self._asdict()
        for name in ("winner_site", "loser_site"):
            out[name] = out[name].hex()
        for name in ("winner_value", "loser_value"):
            if isinstance(out[name], bytes):
                out[name] = out[name].hex()
        for name in ("created_at", "resolved_at"):
            if out[name] is not None:
                out[name] = schema.format_timestamp(out[name])
        return out


def _row(record: tuple[Any, ...]) -> ConflictRow:
    values = list(record)
    values[6] = msgspec.msgpack.decode(values[6])
    values[9] = msgspec.msgpack.decode(values[9])
    values[8] = bytes(values[8])
    values[11] = bytes(values[11])
    return ConflictRow(*values)


async def list_conflicts(
    store: ChangeStore,
    *,
    tenant: str | None = None,
    table: str | None = None,
    row_id: str | None = None,
    include_resolved: bool = False,
    limit: int = 100,
) -> list[ConflictRow]:
    """Conflict records, newest first (unresolved ones only unless asked)."""
    clauses, params = [], []
    if tenant is not None:
        clauses.append("tenant = %s")
        params.append(tenant)
    if table is not None:
        clauses.append("tbl = %s")
        params.append(schema.table(table).name)
    if row_id is not None:
        clauses.append("row_id = %s")
        params.append(row_id)
    if not include_resolved:
        clauses.append("resolved_at IS NULL")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM {SCHEMA}.conflicts {where} ORDER BY id DESC LIMIT %s",  # UUIDv7: by time
            (*params, limit),
        )
        return [_row(record) for record in await cur.fetchall()]


async def get_conflict(store: ChangeStore, conflict_id: str) -> ConflictRow:
    if not schema.is_uuid(conflict_id):
        raise ValidationError(f"a conflict id is a UUID, got {conflict_id!r}")
    async with store.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM {SCHEMA}.conflicts WHERE id = %s", (conflict_id,))
        found = await cur.fetchone()
    if found is None:
        raise NotFoundError("conflicts", conflict_id)
    return _row(found)


async def resolve_conflict(
    store: ChangeStore,
    conflict_id: str,
    *,
    keep: str | None = "winner",
    value: Any = _UNSET,
    by: str = "admin",
) -> ConflictRow:
    """Resolve a conflict: keep the winner, restore the loser (``keep="loser"``),
    or write ``value``. Returns the record as resolved."""
    record = await get_conflict(store, conflict_id)
    if record.resolved_at is not None:
        raise ValidationError(f"conflict {conflict_id} was already resolved by {record.resolved_by}")
    if value is _UNSET and keep not in KEEP:
        raise ValidationError(f"keep is one of {', '.join(KEEP)}, or give a value")

    async def mark(conn: Any) -> None:
        await conn.execute(
            f"UPDATE {SCHEMA}.conflicts SET resolved_at = now(), resolved_by = %s WHERE id = %s",
            (by, conflict_id),
        )

    if value is _UNSET and keep == "winner":
        async with store.pool.connection() as conn:
            await mark(conn)
        return await get_conflict(store, conflict_id)
    tbl = schema.table(record.table)
    if value is _UNSET:
        chosen = record.loser_value
    elif record.column == DELETED:
        if value not in (0, 1) or isinstance(value, bool):
            raise ValidationError(f"{DELETED} is 0 (live) or 1 (deleted), got {value!r}")
        chosen = value
    else:
        chosen = schema.to_storage(tbl.column(record.column), value, table_name=tbl.name)
    cells = await store.cells(record.tenant, record.table, record.row_id)
    if cells is None:
        raise NotFoundError(record.table, record.row_id)
    held = cells[record.column]
    # Later than the value it replaces, so it wins everywhere; it saw that
    # value, so it is not itself a conflict.
    stamp = max(hlc_mod.pack(hlc_mod.wall_ms(), 0), held.hlc + 1)
    change = p.LocalChange(
        seq=0,  # renumbered by the store after the server site's last write
        table=record.table,
        id=record.row_id,
        hlc=stamp,
        values={record.column: chosen},
        seen={record.column: (held.hlc, held.site)},
    )
    site = await store.server_site()
    result = await store.merge(record.tenant, site, [p.LocalTx(stamp, [change])], also=mark, renumber=True)
    if result.rejected:
        refusal = result.rejected[0]
        raise ValidationError(f"the resolution was refused: {refusal.message}")
    return await get_conflict(store, conflict_id)
