"""The import history: which imports ran, and which rows each one wrote.

Kept in the local-only tables ``legacy_imports`` and ``legacy_import_rows``
(replica migration 0002); nothing here is synced. A rollback reads it to know
what to remove and marks what it removed.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple

import msgspec

from syncstore import schema
from syncstore.legacy.report import ImportRecord, ImportReport, RollbackReport, to_json
from syncstore.replica.store import Replica


class RowRecord(NamedTuple):
    table: str
    id: str
    op: str  # "insert", "update" or "secret"
    hlc: int
    previous: str | None  # JSON of the values an update replaced; for a secret, "replaced" or None


def start(store: Replica, import_id: str, *, source: str, sha256: str, options: dict[str, Any]) -> None:
    store.connection.execute(
        "insert into legacy_imports (id, imported_at, source, source_sha256, options, summary) values (?, ?, ?, ?, ?, '{}')",
        (import_id, schema.now_iso(), source, sha256, schema.encode_json(options)),
    )


def record_rows(store: Replica, import_id: str, rows: Iterable[tuple[str, str, str, int, str | None]]) -> None:
    store.connection.executemany(
        "insert into legacy_import_rows (import_id, tbl, pk, op, hlc, previous) values (?, ?, ?, ?, ?, ?)",
        ((import_id, *row) for row in rows),
    )


def finish(store: Replica, import_id: str, report: ImportReport) -> None:
    store.connection.execute("update legacy_imports set summary = ? where id = ?", (to_json(report), import_id))


def find(store: Replica, import_id: str) -> dict[str, Any] | None:
    rows = store.query("select * from legacy_imports where id = ?", (import_id,))
    return rows[0] if rows else None


def rows_of(store: Replica, import_id: str, *, tables: tuple[str, ...]) -> list[RowRecord]:
    marks = ", ".join("?" * len(tables))
    return [
        RowRecord(*row)
        for row in store.connection.execute(
            f"select tbl, pk, op, hlc, previous from legacy_import_rows where import_id = ? and tbl in ({marks}) order by tbl, pk",
            (import_id, *tables),
        )
    ]


def count_rows(store: Replica, import_id: str, table: str) -> int:
    return store.connection.execute(
        "select count(*) from legacy_import_rows where import_id = ? and tbl = ?", (import_id, table)
    ).fetchone()[0]


def mark_undone(store: Replica, import_id: str, table: str, row_id: str, tombstone_hlc: int) -> None:
    store.connection.execute(
        "update legacy_import_rows set undone_hlc = ? where import_id = ? and tbl = ? and pk = ?",
        (tombstone_hlc, import_id, table, row_id),
    )


def undone_by_rollback(store: Replica, table: str, row_id: str, tombstone_hlc: int) -> bool:
    """Whether a row's tombstone is the one a rollback of an import left."""
    found = store.connection.execute(
        "select 1 from legacy_import_rows where tbl = ? and pk = ? and op = 'insert' and undone_hlc = ?",
        (table, row_id, tombstone_hlc),
    ).fetchone()
    return found is not None


def mark_rolled_back(store: Replica, import_id: str, report: RollbackReport) -> None:
    store.connection.execute(
        "update legacy_imports set rolled_back_at = ?, rollback_summary = ? where id = ?",
        (schema.now_iso(), to_json(report), import_id),
    )


def list_imports(store: Replica) -> list[ImportRecord]:
    """Every import that wrote something, oldest first."""
    out = []
    for row in store.query("select * from legacy_imports order by imported_at, id"):
        summary = msgspec.json.decode(row["summary"] or "{}")
        counts = {name: summary.get(name, {}) for name in ("tasks", "environments", "messages")}
        out.append(
            ImportRecord(
                id=row["id"],
                imported_at=row["imported_at"],
                source=row["source"],
                source_sha256=row["source_sha256"],
                tasks=counts["tasks"].get("imported", 0) + counts["tasks"].get("updated", 0),
                environments=counts["environments"].get("imported", 0) + counts["environments"].get("updated", 0),
                messages=counts["messages"].get("imported", 0),
                rolled_back_at=row["rolled_back_at"],
            )
        )
    return out
