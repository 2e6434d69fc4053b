"""Hybrid logical clock.

A stamp is physical milliseconds since the epoch plus a 16-bit logical
counter, packed into one integer (``ms << 16 | counter``) so that stamps sort
as integers. Ties between equal stamps are broken by the writer's 16-byte site
id (see :mod:`syncstore.core.merge`).

The clock never goes backwards: a local tick is greater than every stamp the
clock has produced or received. Receiving a stamp further in the future than
``max_drift_ms`` is refused with :class:`ClockDriftError`, so one machine with a
broken clock cannot win every later conflict.

A clock that once ran ahead (the machine's time was wrong) stays ahead after
the time is corrected, and the sync server refuses stamps more than its drift
cap ahead of its own time. A clock given the server's time (:class:`ServerTime`,
measured by the sync client when it connects) refuses to tick past that cap,
so no new local write is made that the server would refuse; re-stamping the
pending writes (``syncstore.sync.restamp_pending``) brings it back.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

from syncstore.errors import ClockDriftError

COUNTER_BITS = 16
COUNTER_MAX = (1 << COUNTER_BITS) - 1
DEFAULT_MAX_DRIFT_MS = 60_000


def pack(ms: int, counter: int) -> int:
    if not 0 <= counter <= COUNTER_MAX:
        raise ValueError(f"counter {counter} out of range 0..{COUNTER_MAX}")
    if ms < 0:
        raise ValueError("milliseconds must not be negative")
    return (ms << COUNTER_BITS) | counter


def unpack(stamp: int) -> tuple[int, int]:
    return stamp >> COUNTER_BITS, stamp & COUNTER_MAX


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def from_ms(ms: int) -> int:
    """The first stamp of a given millisecond (e.g. for imported timestamps)."""
    return pack(ms, 0)


class ServerTime(NamedTuple):
    """The sync server's time as measured when a connection was welcomed: its
    clock read ``server_ms`` when this machine's read ``local_ms``, and it
    refuses stamps more than ``max_drift_ms`` ahead of its clock."""

    server_ms: int
    local_ms: int
    max_drift_ms: int

    def now(self, local_now_ms: int) -> int:
        """The server's time now, estimated. A local clock that stepped back
        since the measurement says nothing of the time passed: none is counted."""
        return self.server_ms + max(0, local_now_ms - self.local_ms)

    def limit(self, local_now_ms: int) -> int:
        """The latest millisecond the server accepts a stamp for, now."""
        return self.now(local_now_ms) + self.max_drift_ms

    def encode(self) -> str:
        return f"{self.server_ms} {self.local_ms} {self.max_drift_ms}"

    @classmethod
    def decode(cls, text: object) -> ServerTime | None:
        """The value :meth:`encode` made, or None for anything else."""
        try:
            server_ms, local_ms, max_drift_ms = (int(part) for part in str(text).split())
        except ValueError:
            return None
        return cls(server_ms, local_ms, max_drift_ms)


def drift_error(stamp_ms: int, server: ServerTime, local_now_ms: int) -> ClockDriftError:
    """A local write refused: its stamp is past what the server accepts."""
    server_now = server.now(local_now_ms)
    ahead = stamp_ms - server_now
    wait = ahead - server.max_drift_ms
    return ClockDriftError(
        stamp_ms=stamp_ms,
        now_ms=server_now,
        max_drift_ms=server.max_drift_ms,
        message=(
            f"this replica's clock is {ahead / 1000:.1f} s ahead of the sync server's time (the server "
            f"accepts {server.max_drift_ms / 1000:g} s): local writes are refused until its time catches up "
            f"(about {wait / 1000:.0f} s), or until the machine's clock is corrected and the pending changes "
            f"re-stamped (`syncstore sync restamp`)"
        ),
    )


class HybridClock:
    """One replica's clock. ``now`` is injectable so tests control time.
    ``server``, when set, is the sync server's time: ticks past its drift cap
    are refused with :class:`ClockDriftError`."""

    __slots__ = ("_last", "_now", "max_drift_ms", "server")

    def __init__(
        self,
        *,
        last: int = 0,
        now: Callable[[], int] = wall_ms,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
    ):
        self._last = last
        self._now = now
        self.max_drift_ms = max_drift_ms
        self.server: ServerTime | None = None

    @property
    def last(self) -> int:
        return self._last

    def _next(self, count: int) -> int:
        now_ms = self._now()
        now = now_ms << COUNTER_BITS
        last = self._last
        # Same millisecond (or a clock that stepped back): count instead. A full
        # counter rolls into the next millisecond, which keeps the order.
        first = now if now > last else last + 1
        server = self.server
        if server is not None and ((first + count - 1) >> COUNTER_BITS) > server.limit(now_ms):
            raise drift_error((first + count - 1) >> COUNTER_BITS, server, now_ms)
        self._last = first + count - 1
        return first

    def tick(self) -> int:
        """A new stamp for a local event, greater than every earlier one."""
        return self._next(1)

    def tick_many(self, count: int) -> int:
        """The first of ``count`` consecutive new stamps (``first .. first + count - 1``),
        as ``count`` ticks would give within one millisecond, for a batch of writes."""
        if count < 1:
            raise ValueError("count must be at least 1")
        return self._next(count)

    def reset(self, last: int) -> None:
        """Make ``last`` the last stamp, even an earlier one: only for a clock
        taking the value its replica file holds (which re-stamping may lower)."""
        self._last = last

    def check(self, stamp: int) -> None:
        """Refuse a stamp too far ahead of this machine's wall clock."""
        stamp_ms = stamp >> COUNTER_BITS
        now_ms = self._now()
        if stamp_ms - now_ms > self.max_drift_ms:
            raise ClockDriftError(stamp_ms=stamp_ms, now_ms=now_ms, max_drift_ms=self.max_drift_ms)

    def receive(self, stamp: int) -> int:
        """Advance past a stamp seen from another replica; return the new stamp."""
        self.check(stamp)
        now = self._now() << COUNTER_BITS
        self._last = max(now, self._last + 1, stamp + 1)
        return self._last

    def observe(self, stamp: int) -> None:
        """Make sure later ticks sort after ``stamp`` (no drift check)."""
        if stamp > self._last:
            self._last = stamp
