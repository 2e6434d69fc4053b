"""Retry with exponential backoff and jitter, and a circuit breaker.

Small pieces shared by the sync client and the HTTP embedder. Both take an
injectable clock and sleep so tests run without waiting.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, Iterator, TypeVar

from syncstore.errors import CircuitOpenError

T = TypeVar("T")


def backoff_delays(
    *,
    base: float = 0.1,
    factor: float = 2.0,
    maximum: float = 30.0,
    jitter: float = 1.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Endless delays: ``base * factor**n`` capped at ``maximum``, with "full jitter"
    (a uniform fraction ``jitter`` of each delay is random) so that many clients
    reconnecting at once spread out.

    The generator may run for days (a client offline that long keeps retrying),
    so once the cap is reached the exponent stops growing: ``factor**n`` would
    otherwise overflow a float after about a thousand attempts.
    """
    if base < 0 or maximum < 0:
        raise ValueError("base and maximum must not be negative")
    if factor < 1:
        raise ValueError("factor must be at least 1")
    if not 0 <= jitter <= 1:
        raise ValueError("jitter must be between 0 and 1")
    rng = rng or random.Random()
    delay = min(base, maximum)
    while True:
        yield delay * (1 - jitter) + rng.uniform(0, delay * jitter)
        delay = min(maximum, delay * factor)


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
    """Call ``call`` up to ``attempts`` times, sleeping a backoff between failures.

    Only exceptions in ``retry_on`` are retried; any other propagates at once,
    and the last failure propagates unchanged when the attempts run out.
    """
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
    ``reset_timeout`` seconds. Half-open: exactly one trial call goes through
    (others arriving meanwhile are refused as if open); its success closes the
    circuit, its failure opens it again for another ``reset_timeout``.

    Only ``Exception`` counts as a failure: a trial interrupted by
    ``KeyboardInterrupt`` or task cancellation says nothing about the service,
    so the breaker just allows another trial.
    """

    def __init__(
        self,
        *,
        name: str = "service",
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout < 0:
            raise ValueError("reset_timeout must not be negative")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial call is in flight
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    @property
    def failures(self) -> int:
        """Failures in a row so far."""
        return self._failures

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_timeout:
            return "half-open"
        return "open"

    def _refuse(self) -> CircuitOpenError:
        elapsed = self._clock() - (self._opened_at or 0)
        remaining = max(0.0, self.reset_timeout - elapsed)
        return CircuitOpenError(
            f"{self.name}: circuit open after {self._failures} failures; retry in {remaining:.1f}s",
            service=self.name,
            retry_after=remaining,
        )

    def call(self, fn: Callable[[], T]) -> T:
        with self._lock:
            state = self._state()
            if state == "open" or (state == "half-open" and self._trial):
                raise self._refuse()
            trial = state == "half-open"
            if trial:
                self._trial = True
        try:
            result = fn()
        except Exception:
            with self._lock:
                self._failures += 1
                if trial or self._failures >= self.failure_threshold:
                    self._opened_at = self._clock()
                if trial:
                    self._trial = False
            raise
        except BaseException:
            if trial:
                with self._lock:
                    self._trial = False
            raise
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False
        return result
