"""The newest change log entries of each tenant, shared by every stream of a process.

One commit wakes every stream of its tenant at once. Reading the log once per
stream would make a thousand subscribers cost a thousand queries per commit;
instead the streams share a cache of each tenant's newest entries and the
reads that refresh it.

Correctness rests on one rule: a read must see every entry committed before
it was asked for. A refresh reads the database from the newest entry cached;
a stream may use a refresh only if that refresh *started* after the stream
asked. So a stream arriving while a refresh runs waits for it, then takes the
next one, which every stream that arrived meanwhile shares: a burst of wake-ups
costs at most two queries. (Entries of a tenant become visible in log order,
see :mod:`syncstore_server.store`, so "every entry after the newest cached"
is exactly what a refresh must fetch.)

A stream whose cursor is older than the cache (a client catching up) reads
the database directly; a tenant's cache starts where such a direct read first
reaches the end of the log.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from syncstore.core import protocol as p

from syncstore_server.store import ChangeStore

Entry = tuple[int, p.ServerTx]


class _Tail:
    """One tenant's cache: every entry with ``low < seq <= high``, in order."""

    __slots__ = ("low", "high", "entries", "started", "finished", "refresh", "reaches_end")

    def __init__(self, position: int):
        self.low = position
        self.high = position
        self.entries: list[Entry] = []
        self.started = 0  # refreshes begun
        self.finished = 0  # the newest refresh completed
        self.refresh: asyncio.Task[None] | None = None
        self.reaches_end = True  # the last refresh read to the end of the log


class LogTail:
    def __init__(self, store: ChangeStore, *, keep: int = 2_000, fetch: int = 1_000, tenants: int = 10_000):
        self.store = store
        self.keep = keep  # entries cached per tenant
        self.fetch = fetch  # most entries one refresh reads
        self.max_tenants = tenants
        self._tails: OrderedDict[str, _Tail] = OrderedDict()

    async def read(self, tenant: str, after: int, *, limit: int) -> tuple[list[Entry], bool]:
        """The tenant's entries after ``after`` (at most ``limit``), and whether more follow."""
        tail = self._tails.get(tenant)
        if tail is None or after < tail.low:
            found, more = await self.store.read_log(tenant, after, limit=limit)
            if not more and tenant not in self._tails:
                # This read reached the end of the log: from here on, the cache serves.
                self._tails[tenant] = tail = _Tail(found[-1][0] if found else after)
                while len(self._tails) > self.max_tenants:
                    self._tails.popitem(last=False)
            return found, more
        self._tails.move_to_end(tenant)
        needed = tail.started + 1  # the first refresh to start after this request
        while tail.finished < needed:
            if tail.refresh is None:
                tail.started += 1
                tail.refresh = asyncio.create_task(self._refresh(tenant, tail, tail.started))
            await asyncio.shield(tail.refresh)
        if after < tail.low:  # trimmed while we waited
            return await self.store.read_log(tenant, after, limit=limit)
        newer = [entry for entry in tail.entries if entry[0] > after]
        more = len(newer) > limit or not tail.reaches_end
        return newer[:limit], more

    async def _refresh(self, tenant: str, tail: _Tail, number: int) -> None:
        try:
            found, more = await self.store.read_log(tenant, tail.high, limit=self.fetch)
            if found:
                tail.entries.extend(found)
                tail.high = found[-1][0]
                if len(tail.entries) > self.keep:
                    dropped = len(tail.entries) - self.keep
                    tail.low = tail.entries[dropped - 1][0]
                    del tail.entries[:dropped]
            tail.reaches_end = not more
            tail.finished = number
        finally:
            tail.refresh = None
