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
that moved into or out of one of its shapes sent whole.

Streams with the same shapes (most of a tenant's clients subscribe to whole
tables) are indexed as one group: the selection is made once per group, and
the group's streams share one :class:`~syncstore.core.server_session.Delivery`,
whose frames are encoded once. A commit then costs each stream little more
than writing those bytes to its socket.
"""

from __future__ import annotations

import logging
from typing import Any, Hashable, Iterable, Protocol

from syncstore import schema
from syncstore.core import server_session as ss
from syncstore.core import shapes as sh

log = logging.getLogger("syncstore.server.router")

_INDEXES = {name: tbl.indexes for name, tbl in schema.TABLES.items()}


class Sink(Protocol):
    def deliver(self, entries: ss.Delivery) -> None: ...


class _Group:
    """The live streams of one tenant with the same shapes."""

    __slots__ = ("key", "selection", "buckets", "sinks")

    def __init__(self, key: tuple[str, frozenset[sh.ShapeFilter]], shapes: Iterable[sh.ShapeFilter]):
        self.key = key
        self.selection = sh.by_table(shapes)
        self.buckets: list[Hashable] = []
        self.sinks: dict[int, Sink] = {}  # id(sink) -> sink, in the order they registered


class Router:
    def __init__(self) -> None:
        self._buckets: dict[Hashable, set[_Group]] = {}
        self._groups: dict[tuple[str, frozenset[sh.ShapeFilter]], _Group] = {}
        self._subs: dict[int, _Group] = {}  # id(sink) -> its group
        self._tenants: dict[str, int] = {}  # live streams per tenant

    def __len__(self) -> int:
        return len(self._subs)

    def has_tenant(self, tenant: str) -> bool:
        return tenant in self._tenants

    def register(self, sink: Sink, tenant: str, shapes: Iterable[sh.ShapeFilter]) -> None:
        """Route ``tenant``'s entries matching ``shapes`` to ``sink`` (replacing what it had)."""
        self.unregister(sink)
        shapes = list(shapes)
        key = (tenant, frozenset(shapes))
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key, shapes)
            for table, filters in group.selection.items():
                for shape in filters:
                    if shape.whole:
                        group.buckets.append((tenant, table))
                    else:
                        column, values = shape.where[0]
                        group.buckets.extend((tenant, table, column, value) for value in values)
            for bucket in group.buckets:
                self._buckets.setdefault(bucket, set()).add(group)
        group.sinks[id(sink)] = sink
        self._subs[id(sink)] = group
        self._tenants[tenant] = self._tenants.get(tenant, 0) + 1

    def unregister(self, sink: Sink) -> None:
        group = self._subs.pop(id(sink), None)
        if group is None:
            return
        del group.sinks[id(sink)]
        if not group.sinks:
            del self._groups[group.key]
            for bucket in group.buckets:
                found = self._buckets.get(bucket)
                if found is not None:
                    found.discard(group)
                    if not found:
                        del self._buckets[bucket]
        tenant = group.key[0]
        left = self._tenants[tenant] - 1
        if left:
            self._tenants[tenant] = left
        else:
            del self._tenants[tenant]

    def route(self, tenant: str, entries: Iterable[sh.LogEntry]) -> None:
        """Hand each live stream of ``tenant`` the parts of ``entries`` it selects, in order."""
        if tenant not in self._tenants:
            return
        out: dict[_Group, ss.Delivery] = {}
        for entry in entries:
            for group in self._candidates(tenant, entry):
                kept = sh.select(entry, group.selection)
                if kept is not None:
                    delivery = out.get(group)
                    if delivery is None:
                        delivery = out[group] = ss.Delivery()
                    delivery.append((entry.seq, kept))
        for group, delivery in out.items():
            # A sink may unregister itself (a client too slow) while we go.
            for sink in list(group.sinks.values()):
                try:
                    sink.deliver(delivery)
                except Exception:  # one broken stream must not stop the others
                    log.exception("delivering log entries to a live stream failed")

    def _candidates(self, tenant: str, entry: sh.LogEntry) -> set[_Group]:
        buckets = self._buckets
        found: set[_Group] = set()
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
