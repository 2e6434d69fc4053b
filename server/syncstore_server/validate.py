"""Every value a client pushes is checked against the schema before any SQL runs.

A pushed transaction either passes whole or is refused whole, for good: a
refusal names the first problem (a code and a clear message) and the server
records it and acks past it, since sending the same bytes again cannot succeed.
What passes comes out in canonical stored form (see :mod:`syncstore.schema`),
so the server writes and hands back exactly what every replica holds.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from syncstore import schema
from syncstore.core import hlc as hlc_mod
from syncstore.core import protocol as p
from syncstore.core.merge import DELETED
from syncstore.errors import ValidationError

DEFAULT_MAX_TX_CHANGES = 10_000
MAX_HLC = (1 << 63) - 1  # stamps are stored as bigint


class Refused(Exception):
    """A transaction that will never merge: ``code`` and ``message`` go to the client."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class Checked(NamedTuple):
    """One pushed row change, checked: canonical values, no ``id`` cell."""

    seq: int
    table: str
    id: str
    hlc: int
    values: dict[str, Any]  # column -> canonical value, including _deleted
    seen: dict[str, tuple[int, bytes]] | None


def check_tx(
    tx: p.LocalTx,
    *,
    now_ms: int,
    max_drift_ms: int = hlc_mod.DEFAULT_MAX_DRIFT_MS,
    max_tx_changes: int = DEFAULT_MAX_TX_CHANGES,
) -> list[Checked]:
    """The changes of one transaction, checked; raises :class:`Refused`."""
    if len(tx.changes) > max_tx_changes:
        raise Refused("tx_too_large", f"a transaction carries at most {max_tx_changes} changes, got {len(tx.changes)}")
    return [check_change(change, now_ms=now_ms, max_drift_ms=max_drift_ms) for change in tx.changes]


def check_change(change: p.LocalChange, *, now_ms: int, max_drift_ms: int) -> Checked:
    tbl = schema.TABLES.get(change.table) if isinstance(change.table, str) else None
    if tbl is None:
        raise Refused("unknown_table", f"no synced table {change.table!r}")
    where = f"{tbl.name} row {change.id!r}"
    if not isinstance(change.id, str) or not schema._UUID.match(change.id):
        raise Refused("bad_id", f"{tbl.name}: a row id is a UUID string, got {change.id!r}")
    if not 0 < change.hlc <= MAX_HLC:
        raise Refused("bad_clock", f"{where}: clock stamp {change.hlc} is out of range")
    ahead = (change.hlc >> hlc_mod.COUNTER_BITS) - now_ms
    if ahead > max_drift_ms:
        raise Refused(
            "clock_drift",
            f"{where}: the change is stamped {ahead} ms in the future (the limit is {max_drift_ms} ms): "
            f"the writer's clock is wrong",
        )
    if not isinstance(change.values, dict) or not change.values:
        raise Refused("empty_change", f"{where}: a change writes at least one column")
    values: dict[str, Any] = {}
    for name, value in change.values.items():
        if name == DELETED:
            if isinstance(value, bool) or value not in (0, 1):
                raise Refused("bad_value", f"{where}: {DELETED} is 0 or 1, got {value!r}")
            values[DELETED] = int(value)
            continue
        if not isinstance(name, str) or name not in tbl.column_names:
            raise Refused("unknown_column", f"{tbl.name}: no column {name!r}")
        if name == "id":
            if value != change.id:
                raise Refused("bad_id", f"{where}: the id column says {value!r}")
            continue
        col = tbl.column(name)
        try:
            canonical = schema.to_storage(col, value, table_name=tbl.name)
        except ValidationError as exc:
            raise Refused("bad_value", str(exc)) from None
        if canonical is None and col.required:
            raise Refused("bad_value", f"{tbl.name}.{name}: is required and may not be null")
        if col.type == "json" and canonical is not None and "\\u0000" in canonical:
            # Valid JSON, but PostgreSQL's jsonb cannot hold a NUL character.
            raise Refused("bad_value", f"{tbl.name}.{name}: JSON text may not contain \\u0000")
        values[name] = canonical
    if not values:
        raise Refused("empty_change", f"{where}: a change writes at least one column besides the id")
    seen = change.seen
    if seen is not None:
        for name in seen:
            if name != DELETED and name not in tbl.column_names:
                raise Refused("unknown_column", f"{tbl.name}: no column {name!r} (in seen)")
        seen = {name: (int(clock[0]), bytes(clock[1])) for name, clock in seen.items()}
    inserting = seen is None and values.get(DELETED) == 0
    if inserting:
        missing = [c.name for c in tbl.columns[1:] if c.required and c.name not in values]
        if missing:
            raise Refused("bad_value", f"{tbl.name}: an insert must give {', '.join(missing)}")
    elif tbl.append_only:
        raise Refused("append_only", f"{tbl.name}: rows are append-only; only inserts are accepted")
    return Checked(change.seq, tbl.name, change.id, change.hlc, values, seen)
