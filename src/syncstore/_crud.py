"""The shared create/get/update/delete/list over one synced table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from syncstore import records, schema
from syncstore.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from syncstore.store import Store

R = TypeVar("R", bound=msgspec.Struct)


class TableAPI(Generic[R]):
    """Typed access to one table; subclasses add the domain's own operations."""

    table: str
    record: type[R]

    def __init__(self, store: Store):
        self.store = store

    def _record(self, row: dict[str, Any]) -> R:
        return records.from_row(self.record, self.table, row)

    def get(self, row_id: str) -> R:
        row = self.store.get(self.table, row_id)
        if row is None:
            raise NotFoundError(self.table, row_id)
        return self._record(row)

    def find(self, row_id: str) -> R | None:
        row = self.store.get(self.table, row_id)
        return None if row is None else self._record(row)

    def _create(self, values: dict[str, Any]) -> R:
        values = {k: v for k, v in values.items() if v is not None}
        row_id = self.store.insert(self.table, values)
        return self.get(row_id)

    def update(self, row_id: str, **changes: Any) -> R:
        if not changes:
            raise ValidationError("nothing to update", table=self.table)
        self.store.update(self.table, row_id, changes)
        return self.get(row_id)

    def delete(self, row_id: str) -> None:
        self.store.delete(self.table, row_id)

    def list(
        self,
        *,
        limit: int | None = 100,
        offset: int = 0,
        order_by: str = "created_at",
        descending: bool = False,
        **filters: Any,
    ) -> list[R]:
        """Rows matching equality filters (a list means any of), paginated."""
        where = {k: v for k, v in filters.items() if v is not None}
        rows = self.store.rows(
            self.table, where=where, order_by=order_by, descending=descending, limit=limit, offset=offset
        )
        return [self._record(row) for row in rows]

    def count(self) -> int:
        return self.store.count(self.table)


def check_choice(table: str, field: str, value: str | None) -> None:
    if value is not None:
        schema.to_storage(schema.table(table).column(field), value, table_name=table)
