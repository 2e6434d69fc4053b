"""The newest change log entries of each tenant, shared by every stream of a process.

One commit concerns many streams at once. Reading the log once per stream
would make a thousand subscribers cost a thousand queries per commit;
instead the streams share a cache of each tenant's newest entries and the
reads that refresh it, and live streams get new entries pushed by the
:class:`~syncstore_server.router.Router`.

Two kinds of stream:

- **Catching up** (a client behind the log): :meth:`LogTail.read` serves it
  from the cache, or from the database when its position is older than the
  cache. A read must see every entry committed before it was asked for: a
  refresh reads the database from the newest entry cached, and a read may use
  a refresh only if that refresh *started* after the read asked. A burst of
  reads costs at most two queries. A database read continues with the cache
  only where the cache holds every entry after the read's end; when the cache
  moved past it meanwhile (created further on by another first read, or
  trimmed), it says "more" and the stream reads again from its end.
- **Live** (a stream that reached the end): each refresh hands the entries
  it fetched to the router in the same step that adds them to the cache, and
  a read that reaches the end says where (``head``): a stream that registers
  with the router at ``head`` in the same step (no await between) is owed
  exactly the entries after it, which the next refreshes route to it.

Refreshes are started by the tenant's commits (:meth:`poke`, called on each
NOTIFY of the tenant by one subscription per tenant, see :meth:`join`), never
by polling. A poke while a refresh runs starts one more after it. (Entries of
a tenant become visible in log order, see :mod:`syncstore_server.store`, so
"every entry after the newest cached" is exactly what a refresh must fetch.)
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Callable, NamedTuple

from syncstore.core.shapes import LogEntry

from syncstore_server.router import Router
from syncstore_server.store import ChangeStore

log = logging.getLogger("syncstore.server.log_tail")


class TailRead(NamedTuple):
    entries: list[LogEntry]
    more: bool  # stopped at the limit: read again from the last entry
    head: int  # when not ``more``: the read is complete up to here
    oldest: int  # the oldest position the log serves


class _Tail:
    """One tenant's cache: every entry with ``low < seq <= high``, in order."""

    __slots__ = (
        "low", "high", "entries", "started", "finished", "refresh", "reaches_end", "again", "oldest", "failures",
    )  # fmt: skip

    def __init__(self, position: int, oldest: int):
        self.low = position
        self.high = position
        self.entries: list[LogEntry] = []
        self.started = 0  # refreshes begun
        self.finished = 0  # the newest refresh completed
        self.refresh: asyncio.Task[None] | None = None
        self.reaches_end = True  # the last refresh read to the end of the log
        self.again = False  # poked while a refresh ran
        self.oldest = oldest
        self.failures = 0  # refreshes failed in a row (the retry backs off)


class LogTail:
    def __init__(
        self,
        store: ChangeStore,
        *,
        keep: int = 2_000,
        fetch: int = 1_000,
        tenants: int = 10_000,
        router: Router | None = None,
        retry_s: float = 0.1,
        max_retry_s: float = 10.0,
    ):
        self.store = store
        self.retry_s = retry_s  # after a refresh failed, the first retry (then doubling)
        self.max_retry_s = max_retry_s
        self.keep = keep  # entries cached per tenant
        self.fetch = fetch  # most entries one refresh query reads
        self.max_tenants = tenants
        self.router = router if router is not None else Router()
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        # Per tenant: the number of the last commit heard of (to notice one
        # during a read). Numbers are unique across tenants and never reused,
        # so a tenant left and joined again during a read cannot look unpoked.
        self._pokes: dict[str, int] = {}
        self._poked = 0
        self._joined: dict[str, tuple[int, Callable[[], None] | None]] = {}

    # --- who listens --------------------------------------------------------

    def join(self, tenant: str, subscribe: Callable[[str, Callable[[], None]], Callable[[], None]] | None) -> None:
        """A connection of ``tenant`` opened: make sure its commits poke the tail
        (one notifier subscription per tenant, however many connections)."""
        count, unsubscribe = self._joined.get(tenant, (0, None))
        if count == 0 and subscribe is not None:
            unsubscribe = subscribe(tenant, lambda: self.poke(tenant))
        self._joined[tenant] = (count + 1, unsubscribe)

    def leave(self, tenant: str) -> None:
        count, unsubscribe = self._joined.get(tenant, (0, None))
        if count <= 1:
            self._joined.pop(tenant, None)
            self._pokes.pop(tenant, None)
            if unsubscribe is not None:
                unsubscribe()
        else:
            self._joined[tenant] = (count - 1, unsubscribe)

    def poke(self, tenant: str) -> None:
        """Something was committed to ``tenant``'s log: fetch it and route it."""
        self._poked += 1
        self._pokes[tenant] = self._poked
        tail = self._tails.get(tenant)
        if tail is None:
            return
        if tail.refresh is not None:
            tail.again = True
        else:
            self._start_refresh(tenant, tail)

    def poke_all(self) -> None:
        for tenant in list(self._tails):
            self.poke(tenant)

    # --- reading ------------------------------------------------------------

    async def read(self, tenant: str, after: int, *, limit: int) -> TailRead:
        """The tenant's entries after ``after`` (at most ``limit``), whether more follow, and the head."""
        tail = self._tails.get(tenant)
        if tail is None or after < tail.low:
            poked = self._pokes.get(tenant, 0)
            found, more, oldest = await self.store.read_entries(tenant, after, limit=limit)
            end = found[-1].seq if found else after
            tail = self._tails.get(tenant)
            if tail is None:
                if more:
                    return TailRead(found, True, end, oldest)
                # This read reached the end of the log: from here on, the cache serves.
                self._tails[tenant] = tail = _Tail(end, oldest)
                self._evict()
                if self._pokes.get(tenant, 0) != poked:  # a commit was heard during the read
                    self._start_refresh(tenant, tail)
                return TailRead(found, False, end, oldest)
            if not more and tail.high > end:
                # The cache moved past the end of the database read while it ran
                # (entries committed meanwhile, read by a refresh or by another
                # first read that started the cache further on).
                if tail.low > end:
                    # The cache lacks the entries in (end, tail.low]: going on
                    # with it, or reporting its head, would skip them. Read again
                    # from here; the database has them.
                    return TailRead(found, True, end, oldest)
                # The cached entries after it complete the read.
                newer = [entry for entry in tail.entries if entry.seq > end]
                room = max(0, limit - len(found))
                found = found + newer[:room]
                more = len(newer) > room or not tail.reaches_end
                head = tail.high if not more else (found[-1].seq if found else end)
                return TailRead(found, more, head, oldest)
            return TailRead(found, more, end, oldest)
        self._tails.move_to_end(tenant)
        needed = tail.started + 1  # the first refresh to start after this request
        while tail.finished < needed:
            if tail.refresh is None:
                self._start_refresh(tenant, tail)
            refresh = tail.refresh
            assert refresh is not None
            await asyncio.shield(refresh)
        if after < tail.low or self._tails.get(tenant) is not tail:
            # Trimmed while we waited, or dropped (its refreshes stopped, so its
            # head says nothing of what a live stream will be routed).
            return await self.read(tenant, after, limit=limit)
        newer = [entry for entry in tail.entries if entry.seq > after]
        more = len(newer) > limit or not tail.reaches_end
        newer = newer[:limit]
        head = tail.high if not more else (newer[-1].seq if newer else after)
        return TailRead(newer, more, head, tail.oldest)

    def head(self, tenant: str) -> int | None:
        tail = self._tails.get(tenant)
        return None if tail is None else tail.high

    # --- refreshing ---------------------------------------------------------

    def _start_refresh(self, tenant: str, tail: _Tail) -> None:
        tail.started += 1
        tail.again = False
        tail.refresh = asyncio.get_running_loop().create_task(self._refresh(tenant, tail, tail.started))
        tail.refresh.add_done_callback(_retrieved)

    async def _refresh(self, tenant: str, tail: _Tail, number: int) -> None:
        failed = False
        try:
            while True:
                found, more, oldest = await self.store.read_entries(tenant, tail.high, limit=self.fetch)
                tail.oldest = oldest
                if found:
                    tail.entries.extend(found)
                    tail.high = found[-1].seq
                    if len(tail.entries) > self.keep:
                        dropped = len(tail.entries) - self.keep
                        tail.low = tail.entries[dropped - 1].seq
                        del tail.entries[:dropped]
                    # In the same step as the cache grows: live streams get exactly what is new.
                    try:
                        self.router.route(tenant, found)
                    except Exception:  # one broken stream must not stop the others
                        log.exception("routing log entries failed")
                tail.reaches_end = not more
                if not more:
                    break
            tail.failures = 0
        except Exception as exc:
            # A reader waiting on this refresh gets the error (its stream ends
            # and the client resumes by cursor); live streams wait on no one.
            failed = True
            tail.failures += 1
            log.warning("reading the change log of tenant %r failed (%s); trying again", tenant, type(exc).__name__)
            raise
        finally:
            tail.finished = number
            tail.refresh = None
            if self._tails.get(tenant) is tail:
                if tail.again:
                    self._start_refresh(tenant, tail)
                elif failed:
                    # Live streams are owed what was committed: retry, or they
                    # would wait for the tenant's next commit to be poked.
                    delay = min(self.retry_s * 2 ** (tail.failures - 1), self.max_retry_s)
                    asyncio.get_running_loop().call_later(delay, self.poke, tenant)

    def _evict(self) -> None:
        """Drop the least recently used caches, never one a live stream relies on."""
        if len(self._tails) <= self.max_tenants:
            return
        for tenant in list(self._tails):
            if len(self._tails) <= self.max_tenants:
                return
            tail = self._tails[tenant]
            if not self.router.has_tenant(tenant) and tenant not in self._joined and tail.refresh is None:
                del self._tails[tenant]


def _retrieved(task: asyncio.Task[None]) -> None:
    """A refresh's error is logged by the refresh, and raised to readers that wait on it."""
    if not task.cancelled():
        task.exception()
