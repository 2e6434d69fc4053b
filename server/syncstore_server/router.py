"""Route new log entries to the live streams whose shapes they concern.

Each process keeps one index of the shapes of its live streams:
``(tenant, table)`` for whole tables (the "all rows" bucket) and
``(tenant, table, column, value)`` for filtered shapes, under the first
filtered column and each of its values. A new entry costs a few dictionary
lookups per row it touches (the row's indexed values after the entry, and
the old ones of the columns it moved, from the entry's routing keys); only
the streams found there are looked at, so routing costs about the same
whatever the number of shapes. Each of those streams then gets the part of
the entry its shapes select (:func:`syncstore.core.shapes.select`), with rows
that moved into one of its shapes sent whole.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Protocol

from syncstore import schema
from syncstore.core import protocol as p
from syncstore.core import shapes as sh

_INDEXES = {name: tbl.indexes for name, tbl in schema.TABLES.items()}


class Sink(Protocol):
    def deliver(self, entries: list[tuple[int, p.ServerTx]]) -> None: ...


class _Sub:
    __slots__ = ("sink", "tenant", "selection", "buckets")

    def __init__(self, sink: Sink, tenant: str, shapes: Iterable[sh.ShapeFilter]):
        self.sink = sink
        self.tenant = tenant
        self.selection = sh.by_table(shapes)
        self.buckets: list[Hashable] = []


class Router:
    def __init__(self) -> None:
        self._buckets: dict[Hashable, set[_Sub]] = {}
        self._subs: dict[int, _Sub] = {}  # id(sink) -> its registration
        self._tenants: dict[str, int] = {}  # live streams per tenant

    def __len__(self) -> int:
        return len(self._subs)

    def has_tenant(self, tenant: str) -> bool:
        return tenant in self._tenants

    def register(self, sink: Sink, tenant: str, shapes: Iterable[sh.ShapeFilter]) -> None:
        """Route ``tenant``'s entries matching ``shapes`` to ``sink`` (replacing what it had)."""
        self.unregister(sink)
        sub = _Sub(sink, tenant, shapes)
        for table, filters in sub.selection.items():
            for shape in filters:
                if shape.whole:
                    sub.buckets.append((tenant, table))
                else:
                    column, values = shape.where[0]
                    sub.buckets.extend((tenant, table, column, value) for value in values)
        for bucket in sub.buckets:
            self._buckets.setdefault(bucket, set()).add(sub)
        self._subs[id(sink)] = sub
        self._tenants[tenant] = self._tenants.get(tenant, 0) + 1

    def unregister(self, sink: Sink) -> None:
        sub = self._subs.pop(id(sink), None)
        if sub is None:
            return
        for bucket in sub.buckets:
            found = self._buckets.get(bucket)
            if found is not None:
                found.discard(sub)
                if not found:
                    del self._buckets[bucket]
        left = self._tenants[sub.tenant] - 1
        if left:
            self._tenants[sub.tenant] = left
        else:
            del self._tenants[sub.tenant]

    def route(self, tenant: str, entries: Iterable[sh.LogEntry]) -> None:
        """Hand each live stream of ``tenant`` the parts of ``entries`` it selects, in order."""
        if tenant not in self._tenants:
            return
        out: dict[_Sub, list[tuple[int, p.ServerTx]]] = {}
        for entry in entries:
            for sub in self._candidates(tenant, entry):
                kept = sh.select(entry, sub.selection)
                if kept is not None:
                    out.setdefault(sub, []).append((entry.seq, kept))
        for sub, delivered in out.items():
            sub.sink.deliver(delivered)

    def _candidates(self, tenant: str, entry: sh.LogEntry) -> set[_Sub]:
        buckets = self._buckets
        found: set[_Sub] = set()
        keys = {(k.table, k.id): k for k in entry.keys} if entry.keys is not None else None
        rows = [(c.table, c.id, c) for c in entry.tx.changes] + [(c.table, c.row_id, None) for c in entry.tx.conflicts]
        for table, row_id, change in rows:
            whole = buckets.get((tenant, table))
            if whole:
                found |= whole
            values: list[tuple[str, Any]] = []
            row_keys = None if keys is None else keys.get((table, row_id))
            if row_keys is not None:
                values.extend(row_keys.after.items())
                if row_keys.before:
                    values.extend(row_keys.before.items())
            elif change is not None:
                indexes = _INDEXES.get(table, ())
                values.extend((column, cell[0]) for column, cell in change.cells.items() if column in indexes)
            for column, value in values:
                try:
                    bucket = buckets.get((tenant, table, column, value))
                except TypeError:  # an unhashable value cannot be a filter value
                    continue
                if bucket:
                    found |= bucket
        return found
