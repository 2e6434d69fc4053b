"""Retry with backoff and jitter, and the circuit breaker (fake clock and sleep)."""

from __future__ import annotations

import itertools
import random
import threading

import pytest

from syncstore.errors import CircuitOpenError, ExternalServiceError
from syncstore.resilience import CircuitBreaker, backoff_delays, retry

# --- backoff ------------------------------------------------------------------------


def test_without_jitter_the_delays_double_up_to_the_cap():
    delays = list(itertools.islice(backoff_delays(base=0.1, factor=2, maximum=1.0, jitter=0), 7))
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_full_jitter_keeps_each_delay_between_zero_and_its_step():
    steps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = list(itertools.islice(backoff_delays(base=0.5, maximum=4.0, jitter=1.0, rng=random.Random(7)), 6))
    for delay, step in zip(delays, steps):
        assert 0 <= delay <= step
    assert len(set(delays)) == len(delays)  # actually random, not the bare steps


def test_partial_jitter_keeps_the_fixed_part():
    delays = list(itertools.islice(backoff_delays(base=1.0, maximum=8.0, jitter=0.25, rng=random.Random(1)), 50))
    for n, delay in enumerate(delays):
        step = min(8.0, 2.0**n)
        assert 0.75 * step <= delay <= step


def test_the_same_seed_gives_the_same_delays():
    first = list(itertools.islice(backoff_delays(rng=random.Random(42)), 10))
    again = list(itertools.islice(backoff_delays(rng=random.Random(42)), 10))
    assert first == again


def test_an_endless_reconnect_loop_never_overflows():
    # A client offline for days keeps asking; 2.0**n overflows a float near n = 1024.
    delays = backoff_delays(base=0.1, maximum=30.0, jitter=0)
    for _ in range(5000):
        last = next(delays)
    assert last == 30.0


@pytest.mark.parametrize("options", [dict(base=-1), dict(factor=0.5), dict(jitter=1.5), dict(maximum=-2)])
def test_nonsense_settings_are_refused(options):
    with pytest.raises(ValueError):
        next(backoff_delays(**options))


# --- retry --------------------------------------------------------------------------


class Flaky:
    """Fails ``failures`` times with ``error``, then returns "ok"."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError):
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "ok"


def test_retry_succeeds_after_failures_and_sleeps_between_them():
    slept: list[float] = []
    call = Flaky(2)
    assert retry(call, attempts=3, base=0.1, sleep=slept.append, rng=random.Random(3)) == "ok"
    assert call.calls == 3
    assert len(slept) == 2
    assert 0 <= slept[0] <= 0.1 and 0 <= slept[1] <= 0.2


def test_retry_gives_up_with_the_last_error():
    slept: list[float] = []
    call = Flaky(5)
    with pytest.raises(ConnectionError, match="failure 3"):
        retry(call, attempts=3, sleep=slept.append)
    assert call.calls == 3 and len(slept) == 2


def test_errors_outside_retry_on_propagate_at_once():
    slept: list[float] = []
    call = Flaky(1, error=KeyError)
    with pytest.raises(KeyError):
        retry(call, attempts=5, retry_on=(ConnectionError,), sleep=slept.append)
    assert call.calls == 1 and slept == []


def test_retry_with_no_delay_at_all():
    slept: list[float] = []
    assert retry(Flaky(2), attempts=3, base=0, sleep=slept.append) == "ok"
    assert slept == [0, 0]


def test_retry_needs_at_least_one_attempt():
    with pytest.raises(ValueError):
        retry(lambda: 1, attempts=0)


# --- circuit breaker ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail() -> None:
    raise ExternalServiceError("down", service="svc", status=503)


def test_opens_after_the_threshold_and_refuses_until_the_timeout():
    clock = Clock()
    breaker = CircuitBreaker(name="svc", failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(2):
        with pytest.raises(ExternalServiceError):
            breaker.call(fail)
        assert breaker.state == "closed"
    with pytest.raises(ExternalServiceError):
        breaker.call(fail)
    assert breaker.state == "open"
    calls = []
    clock.now += 4
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: calls.append(1))
    assert calls == []  # refused without calling
    assert refused.value.service == "svc"
    assert refused.value.retry_after == pytest.approx(6.0)
    assert refused.value.retryable and refused.value.code == "circuit_open"


def test_a_success_resets_the_count_of_failures_in_a_row():
    breaker = CircuitBreaker(failure_threshold=2, clock=Clock())
    with pytest.raises(ExternalServiceError):
        breaker.call(fail)
    assert breaker.call(lambda: "fine") == "fine"
    assert breaker.failures == 0
    with pytest.raises(ExternalServiceError):
        breaker.call(fail)
    assert breaker.state == "closed"


def test_half_open_trial_success_closes_the_circuit():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    with pytest.raises(ExternalServiceError):
        breaker.call(fail)
    clock.now += 5
    assert breaker.state == "half-open"
    assert breaker.call(lambda: 42) == 42
    assert breaker.state == "closed"


def test_half_open_trial_failure_opens_it_for_another_timeout():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=5, clock=clock)
    for _ in range(3):
        with pytest.raises(ExternalServiceError):
            breaker.call(fail)
    clock.now += 6
    with pytest.raises(ExternalServiceError):  # the one trial, which fails
        breaker.call(fail)
    assert breaker.state == "open"
    clock.now += 4.9
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    clock.now += 0.1
    assert breaker.state == "half-open"


def test_only_one_trial_call_while_half_open():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1, clock=clock)
    with pytest.raises(ExternalServiceError):
        breaker.call(fail)
    clock.now += 1
    inside, release = threading.Event(), threading.Event()

    def slow_trial() -> str:
        inside.set()
        release.wait(10)
        return "recovered"

    results: list[str] = []
    trial = threading.Thread(target=lambda: results.append(breaker.call(slow_trial)))
    trial.start()
    assert inside.wait(10)
    with pytest.raises(CircuitOpenError):  # a second caller during the trial is refused
        breaker.call(lambda: "second")
    release.set()
    trial.join(10)
    assert results == ["recovered"]
    assert breaker.call(lambda: "after") == "after"


def test_an_interrupted_trial_does_not_count_as_a_failure():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1, clock=clock)
    with pytest.raises(ExternalServiceError):
        breaker.call(fail)
    clock.now += 1

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)
    assert breaker.state == "half-open"  # another trial is allowed
    assert breaker.call(lambda: "ok") == "ok"


def test_breaker_settings_are_checked():
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(reset_timeout=-1)
