"""``rollback_import``: removing what one import wrote, unless edited since.

In one transaction, for each row the import recorded:

- a row it inserted is deleted (a tombstone, which syncs like any delete) if
  every cell still carries the import's clock; otherwise it is kept, and the
  report names it and the columns written since;
- a row it updated gets its earlier values back (a new write) if the columns
  it wrote still carry its clock; otherwise kept;
- its messages stay: ``task_messages`` is append-only, so messages are never
  deleted; they remain under their removed task, and come back into view if
  the same export is imported again;
- a secret it stored is removed with its environment; one it replaced stays,
  as the earlier value is not kept anywhere.
"""

from __future__ import annotations

import msgspec

from syncstore.core.merge import DELETED
from syncstore.errors import NotFoundError, ValidationError
from syncstore.legacy import history, secrets
from syncstore.legacy.report import Kept, RollbackReport, RowRef
from syncstore.replica.store import Replica


def rollback_import(store: Replica, import_id: str) -> RollbackReport:
    with store.transaction():
        found = history.find(store, import_id)
        if found is None:
            raise NotFoundError("legacy_imports", import_id)
        if found["rolled_back_at"] is not None:
            raise ValidationError(f"import {import_id} was already rolled back at {found['rolled_back_at']}")
        report = RollbackReport(import_id=import_id)
        removed: set[str] = set()
        kept: set[str] = set()
        # Environments before tasks: the order does not matter to the data, it
        # keeps the report readable.
        for record in history.rows_of(store, import_id, tables=("environments", "tasks")):
            outcome = _undo(store, import_id, record)
            if isinstance(outcome, Kept):
                report.kept.append(outcome)
                kept.add(record.id)
            elif outcome == "removed":
                report.removed.append(RowRef(table=record.table, id=record.id))
                removed.add(record.id)
            else:
                report.restored.append(RowRef(table=record.table, id=record.id))
        report.messages_kept = history.messages_added(store, import_id)
        for record in history.rows_of(store, import_id, tables=("local_secrets",)):
            if record.detail == "replaced":
                report.kept.append(
                    Kept(table="local_secrets", id=record.id, reason="it replaced an earlier secret, which is not kept")
                )
            elif record.id in kept:
                report.kept.append(Kept(table="local_secrets", id=record.id, reason="its environment was kept"))
            elif secrets.delete(store, "environments", record.id, secrets.GITHUB_TOKEN):
                report.secrets_removed += 1
        history.mark_rolled_back(store, import_id, report)
    return report


def _undo(store: Replica, import_id: str, record: history.RowRecord) -> Kept | str:
    cells = store.cells(record.table, record.id)
    if cells is None:
        return Kept(table=record.table, id=record.id, reason="already deleted here")
    # A cell still stamped with the import's clock holds what the import wrote:
    # any edit has a later stamp. (The site may differ: the same export imported
    # on another replica writes the same values at the same stamp.)
    stamp = record.hlc
    if record.op == "insert":
        since = [name for name, cell in cells.items() if cell.hlc != stamp and name != DELETED]
        if since or cells[DELETED].hlc != stamp:
            return Kept(table=record.table, id=record.id, reason=_edited(since))
        store.delete(record.table, record.id)
        tombstone = store.tombstone(record.table, record.id)
        assert tombstone is not None  # the delete just made it
        history.mark_undone(store, import_id, record.table, record.id, tombstone[0])
        return "removed"
    previous = msgspec.json.decode(record.detail or "{}")
    since = [name for name in previous if cells[name].hlc != stamp]
    if since:
        return Kept(table=record.table, id=record.id, reason=_edited(since))
    # Earlier values are canonical stored forms; JSON columns go back as text.
    store.update(record.table, record.id, previous)
    return "restored"


def _edited(columns: list[str]) -> str:
    listed = ", ".join(sorted(columns)) or "the row"
    return f"edited since the import ({listed})"

