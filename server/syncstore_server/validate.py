"""Every value a client pushes is checked against the schema before any SQL runs.

A pushed transaction either passes whole or is refused whole, for good: a
refusal names the first problem (a code and a clear message) and the server
records it and acks past it, since sending the same bytes again cannot succeed.
One refusal is only for now (:class:`Deferred`): a change stamped further
ahead of the server's clock than the drift cap. The same bytes succeed once
the server's time catches up, so the server neither records it nor acks past
it (see ``ChangeStore.merge``).
What passes comes out in canonical stored form (see :mod:`syncstore.schema`),
so the server writes and hands back exactly what every replica holds. Values
go through the same compiled row checker as the replica's writes
(:mod:`syncstore.replica.rowcheck`), under the one definition of what may be
stored (:mod:`syncstore.storable`), so both ends agree on what is valid.

A client of an older schema version (``client_schema``, from its Hello) does
not know the columns added since: its insert of a row leaves them out, and
they take their defaults, as a newer client's insert of the same row would
write them (at the insert's clock); its updates never touch them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from syncstore import schema
from syncstore.core import hlc as hlc_mod
from syncstore.core import protocol as p
from syncstore.core.merge import DELETED
from syncstore.errors import ValidationError
from syncstore.replica import rowcheck

DEFAULT_MAX_TX_CHANGES = 10_000
MAX_HLC = (1 << 63) - 1  # stamps are stored as bigint
_MISSING: Any = object()


class Refused(Exception):
    """A transaction that will never merge: ``code`` and ``message`` go to the client."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class Deferred(Refused):
    """A transaction that may merge later: stamped ahead of the server's clock
    by more than the drift cap. ``retry_after_ms``: when it would pass."""

    def __init__(self, code: str, message: str, *, retry_after_ms: int):
        super().__init__(code, message)
        self.retry_after_ms = retry_after_ms


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
    client_schema: int | None = None,
) -> list[Checked]:
    """The changes of one transaction, checked; raises :class:`Refused`.
    ``client_schema``: the pushing client's schema version (None: this server's)."""
    if len(tx.changes) > max_tx_changes:
        raise Refused("tx_too_large", f"a transaction carries at most {max_tx_changes} changes, got {len(tx.changes)}")
    newer = _newer_columns(client_schema)
    return [check_change(change, now_ms=now_ms, max_drift_ms=max_drift_ms, newer=newer) for change in tx.changes]


_NEWER: dict[tuple[int, int, int], tuple[Any, dict[str, tuple[schema.Column, ...]]]] = {}


def _newer_columns(version: int | None) -> dict[str, tuple[schema.Column, ...]] | None:
    """Per table, the columns a client of ``version`` does not know (None: it knows them all)."""
    if version is None or version >= schema.SCHEMA_VERSION:
        return None
    key = (id(schema.TABLES), schema.SCHEMA_VERSION, version)
    cached = _NEWER.get(key)
    if cached is None or cached[0] is not schema.TABLES:
        cached = _NEWER[key] = (schema.TABLES, schema.added_after(version))
    return cached[1]


class _Spec(NamedTuple):
    """What the checks need of one table, worked out once."""

    table: schema.Table
    check: Any  # the replica's compiled row checker: canonical values, same errors
    known: frozenset[str]  # columns a change may name (and _deleted)
    required: tuple[str, ...]  # columns an insert must give
    width: int  # columns in a whole row, id included


def _spec(tbl: schema.Table) -> _Spec:
    return _Spec(
        tbl,
        rowcheck.checker(tbl).check,
        frozenset((*tbl.column_names, DELETED)),
        tuple(c.name for c in tbl.columns[1:] if c.required),
        len(tbl.columns),
    )


_SPECS = {name: _spec(tbl) for name, tbl in schema.TABLES.items()}


def check_change(
    change: p.LocalChange,
    *,
    now_ms: int,
    max_drift_ms: int,
    newer: dict[str, tuple[schema.Column, ...]] | None = None,
) -> Checked:
    """One change checked. ``newer``: per table, the columns the pushing
    client does not know (an insert of its leaves them out: they take their
    defaults)."""
    spec = _SPECS.get(change.table) if type(change.table) is str else None
    if spec is None:
        raise Refused("unknown_table", f"no synced table {change.table!r}")
    tbl = spec.table
    where = f"{tbl.name} row {change.id!r}"
    if not schema.is_uuid(change.id):
        raise Refused("bad_id", f"{tbl.name}: a row id is a UUID string, got {change.id!r}")
    if not 0 < change.hlc <= MAX_HLC:
        raise Refused("bad_clock", f"{where}: clock stamp {change.hlc} is out of range")
    ahead = (change.hlc >> hlc_mod.COUNTER_BITS) - now_ms
    if ahead > max_drift_ms:
        raise Deferred(
            "clock_drift",
            f"{where}: the change is stamped {ahead} ms ahead of the server's clock (it accepts "
            f"{max_drift_ms} ms): the writer's clock runs ahead. Nothing from this transaction on was "
            f"merged; push it again once the server's time has caught up, or re-stamp it",
            retry_after_ms=ahead - max_drift_ms,
        )
    values = change.values
    if type(values) is not dict or not values:
        raise Refused("empty_change", f"{where}: a change writes at least one column")
    deleted = _MISSING
    if DELETED in values or "id" in values:
        values = dict(values)
        deleted = values.pop(DELETED, _MISSING)
        if values.get("id", change.id) != change.id:
            raise Refused("bad_id", f"{where}: the id column says something else")
    if newer is not None and deleted == 0 and change.seen is None and tbl.name in newer:
        # An older client's insert: the columns it does not know take their defaults.
        values = {**{c.name: c.default for c in newer[tbl.name]}, **values}
    try:
        if len(values) == spec.width and change.seen is None:
            # A whole row (as a replica's insert always is): the compiled insert
            # check, which with every column given adds nothing of its own.
            out = spec.check(values, insert=True)
        else:
            out = spec.check(values, insert=False)
    except ValidationError as exc:
        if str(exc).endswith("unknown column") or "column name must be text" in str(exc):
            raise Refused("unknown_column", str(exc)) from None
        raise Refused("bad_value", str(exc)) from None
    except RecursionError:  # a value no check foresaw, nested past Python's limit: never a retry loop
        raise Refused("bad_value", f"{where}: a value is nested too deep") from None
    out.pop("id", None)
    if deleted is not _MISSING:
        if type(deleted) is not int or deleted not in (0, 1):
            raise Refused("bad_value", f"{where}: {DELETED} is 0 or 1, got {deleted!r}")
        out[DELETED] = deleted
    if not out:
        raise Refused("empty_change", f"{where}: a change writes at least one column besides the id")
    seen = change.seen
    if seen is not None:
        unknown = [name for name in seen if name not in spec.known]
        if unknown:
            raise Refused("unknown_column", f"{tbl.name}: no column {unknown[0]!r} (in seen)")
    if seen is None and deleted == 0:
        missing = [name for name in spec.required if name not in out]
        if missing:
            raise Refused("bad_value", f"{tbl.name}: an insert must give {', '.join(missing)}")
    elif tbl.append_only:
        raise Refused("append_only", f"{tbl.name}: rows are append-only; only inserts are accepted")
    return Checked(change.seq, tbl.name, change.id, change.hlc, out, seen)
