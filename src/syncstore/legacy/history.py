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
    # update: JSON of the values it replaced; secret: "replaced" or None;
    # task_messages (id is the task's): JSON [start, end) ranges of positions added.
    detail: str | None


def start(store: Replica, import_id: str, *, source: str, sha256: str, options: dict[str, Any]) -> None:
    store.connection.execute(
        "insert into legacy_imports (id, imported_at, source, source_sha256, options, summary) values (?, ?, ?, ?, ?, '{}')",
        (import_id, schema.now_iso(), source, sha256, schema.encode_json(options)),
    )


def record_rows(store: Replica, import_id: str, rows: Iterable[tuple[str, str, str, int, str | None]]) -> None:
    store.connection.executemany(
        "insert into legacy_import_rows (import_id, tbl, pk, op, hlc, detail) values (?, ?, ?, ?, ?, ?)",
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
            f"select tbl, pk, op, hlc, detail from legacy_import_rows where import_id = ? and tbl in ({marks}) order by tbl, pk",
            (import_id, *tables),
        )
    ]


def position_ranges(positions: list[int]) -> list[list[int]]:
    """Sorted positions as [start, end) ranges: [0, 1, 2, 5] -> [[0, 3], [5, 6]]."""
    ranges: list[list[int]] = []
    for position in positions:
        if ranges and ranges[-1][1] == position:
            ranges[-1][1] += 1
        else:
            ranges.append([position, position + 1])
    return ranges


def messages_added(store: Replica, import_id: str) -> int:
    """How many messages an import added, from its per-task records."""
    total = 0
    for (detail,) in store.connection.execute(
        "select detail from legacy_import_rows where import_id = ? and tbl = 'task_messages'", (import_id,)
    ):
        total += sum(end - start for start, end in msgspec.json.decode(detail))
    return total


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
