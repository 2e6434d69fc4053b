"""Hybrid logical clock.

A stamp is physical milliseconds since the epoch plus a 16-bit logical
counter, packed into one integer (``ms << 16 | counter``) so that stamps sort
as integers. Ties between equal stamps are broken by the writer's 16-byte site
id (see :mod:`syncstore.core.merge`).

The clock never goes backwards: a local tick is greater than every stamp the
clock has produced or received. Receiving a stamp further in the future than
``max_drift_ms`` is refused with :class:`ClockDriftError`, so one machine with a
broken clock cannot win every later conflict.
"""

from __future__ import annotations

import time
from typing import Callable

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


class HybridClock:
    """One replica's clock. ``now`` is injectable so tests control time."""

    __slots__ = ("_last", "_now", "max_drift_ms")

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

    @property
    def last(self) -> int:
        return self._last

    def tick(self) -> int:
        """A new stamp for a local event, greater than every earlier one."""
        now = self._now() << COUNTER_BITS
        last = self._last
        # Same millisecond (or a clock that stepped back): count instead. A full
        # counter rolls into the next millisecond, which keeps the order.
        self._last = now if now > last else last + 1
        return self._last

    def tick_many(self, count: int) -> int:
        """The first of ``count`` consecutive new stamps (``first .. first + count - 1``),
        as ``count`` ticks would give within one millisecond, for a batch of writes."""
        if count < 1:
            raise ValueError("count must be at least 1")
        first = self.tick()
        self._last = first + count - 1
        return first

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
