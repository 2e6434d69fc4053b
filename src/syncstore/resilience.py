"""Retry with exponential backoff and jitter, and a circuit breaker.

Small pieces shared by the sync client and the HTTP embedder. Both take an
injectable clock and sleep so tests run without waiting.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, TypeVar

from syncstore.errors import CircuitOpenError

T = TypeVar("T")


def backoff_delays(*, base: float = 0.1, factor: float = 2.0, maximum: float = 30.0, jitter: float = 1.0, rng: random.Random | None = None):
    """Endless delays: ``base * factor**n`` capped at ``maximum``, with "full jitter"
    (a uniform fraction ``jitter`` of each delay is random) so that many clients
    reconnecting at once spread out."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        delay = min(maximum, base * factor**attempt)
        yield delay * (1 - jitter) + rng.uniform(0, delay * jitter)
        attempt += 1


def retry(
    call: Callable[[], T],
    *,
    attempts: int = 3,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    base: float = 0.1,
    maximum: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``call`` up to ``attempts`` times, sleeping a backoff between failures."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    delays = backoff_delays(base=base, maximum=maximum, rng=rng)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except retry_on:
            if attempt == attempts:
                raise
            sleep(next(delays))
    raise AssertionError("unreachable")  # pragma: no cover


class CircuitBreaker:
    """Stop calling a failing service for a while.

    Closed: calls go through; ``failure_threshold`` failures in a row open it.
    Open: calls fail at once with :class:`CircuitOpenError` for
    ``reset_timeout`` seconds. Half-open: one trial call; success closes the
    circuit, failure opens it again.
    """

    def __init__(
        self,
        *,
        name: str = "service",
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_timeout:
            return "half-open"
        return "open"

    def call(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._state() == "open":
                remaining = self.reset_timeout - (self._clock() - (self._opened_at or 0))
                raise CircuitOpenError(
                    f"{self.name}: circuit open after {self._failures} failures; retry in {remaining:.1f}s",
                    service=self.name,
                )
        try:
            result = fn()
        except Exception:
            with self._lock:
                self._failures += 1
                if self._failures >= self.failure_threshold or self._opened_at is not None:
                    self._opened_at = self._clock()
            raise
        with self._lock:
            self._failures = 0
            self._opened_at = None
        return result
