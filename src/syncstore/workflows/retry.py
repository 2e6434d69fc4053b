"""Calling one step function: its retry policy, backoff and timeout.

Attempts are counted durably (each failed attempt writes an ``error``
snapshot), so a crash in the middle of retries does not grant extra attempts.
Backoff is exponential: ``backoff_seconds * backoff_multiplier ** (n - 1)``
after the n-th failure, capped at ``max_backoff_seconds``.

A timeout runs the function in its own thread and stops waiting for it when
the time is up. Python cannot kill a thread: the attempt counts as failed, the
context's ``stop_requested`` turns true, and whatever the function still does
afterwards is ignored. Give timed steps idempotent side effects (or check
``ctx.stop_requested``) for that reason.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, NamedTuple

import msgspec

from syncstore.errors import PermanentStepError
from syncstore.workflows.context import StepContext
from syncstore.workflows.definition import Step
from syncstore.workflows.registry import StepFunction
from syncstore.workflows.snapshots import Meter

DEFAULT_BACKOFF_SECONDS = 1.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_MAX_BACKOFF_SECONDS = 60.0


class StepTimeout(TimeoutError):
    """An attempt ran longer than its step's ``timeout_seconds``."""


class Policy(NamedTuple):
    max_attempts: int
    backoff_seconds: float
    backoff_multiplier: float
    max_backoff_seconds: float
    timeout_seconds: float | None
    transactional: bool


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def policy(node: Step, fn: StepFunction) -> Policy:
    """The node's settings, else the function's, else the defaults."""
    return Policy(
        max_attempts=_first(node.max_attempts, fn.max_attempts, 1),
        backoff_seconds=_first(node.backoff_seconds, fn.backoff_seconds, DEFAULT_BACKOFF_SECONDS),
        backoff_multiplier=_first(node.backoff_multiplier, fn.backoff_multiplier, DEFAULT_MULTIPLIER),
        max_backoff_seconds=_first(node.max_backoff_seconds, fn.max_backoff_seconds, DEFAULT_MAX_BACKOFF_SECONDS),
        timeout_seconds=_first(node.timeout_seconds, fn.timeout_seconds),
        transactional=bool(_first(node.transactional, fn.transactional, False)),
    )


def delay(rule: Policy, failed_attempt: int) -> float:
    """Seconds to wait after the ``failed_attempt``-th failure (1-based)."""
    return min(rule.backoff_seconds * rule.backoff_multiplier ** (failed_attempt - 1), rule.max_backoff_seconds)


class Outcome(NamedTuple):
    ok: bool
    value: Any  # the output (JSON-normalised) or the exception
    meter: Meter


def normalise(output: Any) -> Any:
    """The output as it reads back from storage, so a live run and a replay see
    the same value (a tuple becomes a list, keys become strings)."""
    if output is None or type(output) in (str, bool):  # exact already; numbers may not be (nan, 2**70)
        return output
    try:
        return msgspec.json.decode(msgspec.json.encode(output))
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
        raise PermanentStepError(f"the step's output is not JSON: {exc}") from None


def invoke(fn: Callable[[StepContext], Any], ctx: StepContext, timeout: float | None) -> Outcome:
    """One attempt. Exceptions come back as a failed Outcome; BaseExceptions
    that are not Exceptions (KeyboardInterrupt, SystemExit) go on."""
    if timeout is None:
        meter = Meter()
        try:
            value = normalise(fn(ctx))
        except Exception as exc:
            return Outcome(False, exc, meter.stop())
        return Outcome(True, value, meter.stop())
    return _with_timeout(fn, ctx, timeout)


def _with_timeout(fn: Callable[[StepContext], Any], ctx: StepContext, timeout: float) -> Outcome:
    box: dict[str, Any] = {}
    done = threading.Event()
    ctx._timed_out = threading.Event()

    def target() -> None:
        meter = Meter()  # measured on the step's own thread, so cpu_ms is the step's
        try:
            box["value"] = normalise(fn(ctx))
        except BaseException as exc:  # handed to the waiting thread, which decides
            box["error"] = exc
        finally:
            box["meter"] = meter.stop()
            done.set()

    worker = threading.Thread(target=target, name=f"syncstore-step-{ctx.step_id}", daemon=True)
    waited = Meter()
    worker.start()
    if not done.wait(timeout):
        ctx._timed_out.set()
        return Outcome(False, StepTimeout(f"timed out after {timeout:g} s (attempt {ctx.attempt})"), waited.stop())
    meter = box["meter"]
    if "error" in box:
        error = box["error"]
        if not isinstance(error, Exception):
            raise error
        return Outcome(False, error, meter)
    return Outcome(True, box["value"], meter)
