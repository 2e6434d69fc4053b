"""Helpers of the asyncio tests: which loop callbacks blocked the loop.

asyncio's debug mode reports every callback that runs longer than
``slow_callback_duration`` (wall-clock time). On a shared machine a callback
is also "slow" when the operating system runs another process in the middle
of it, which says nothing about the callback. So beside the loop's own
reports, each callback's run is measured here, and a slow callback counts as
blocking when the loop's thread either worked that long itself (CPU time) or
waited that long without being preempted (a lock, a disk, the GIL held by
another thread): what a blocking store call does.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, NamedTuple

import pytest

# "A few milliseconds": the longest a callback may keep the loop.
LIMIT = 0.005


class Run(NamedTuple):
    callback: str
    wall: float
    cpu: float
    preempted: int  # involuntary context switches during the run

    @property
    def blocking(self) -> bool:
        return self.wall >= LIMIT and (self.cpu >= LIMIT or self.preempted == 0)


class LoopWatch:
    def __init__(self) -> None:
        self.on = False  # measuring (the body of run_watched's coroutine, not the loop's start and end)
        self.slow: list[Run] = []
        self.reports: list[str] = []  # asyncio's own "Executing ... took" warnings

    @property
    def blocking(self) -> list[Run]:
        return [run for run in self.slow if run.blocking]


class _Reports(logging.Handler):
    def __init__(self, watch: LoopWatch):
        super().__init__(logging.WARNING)
        self.watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing ") and " took " in message:
            self.watch.reports.append(message)


@contextmanager
def watching_the_loop() -> Iterator[LoopWatch]:
    """Measure every callback the loops of this thread run. The GIL is handed
    over every millisecond (instead of every five), so a callback that waits for
    the worker thread to let go of the interpreter waits a millisecond, not five."""
    watch = LoopWatch()
    original = asyncio.events.Handle._run
    mine = threading.get_ident()  # loops of other threads (a server under test) are not watched

    def measured(handle: Any) -> None:
        if threading.get_ident() != mine or not watch.on:
            return original(handle)
        owner = getattr(getattr(handle, "_callback", None), "__self__", handle)  # a task's step: the task
        start = _where(owner) if isinstance(owner, asyncio.Task) else ""
        before = resource.getrusage(resource.RUSAGE_THREAD)
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            original(handle)
        finally:
            wall = time.perf_counter() - wall
            if wall >= LIMIT:
                after = resource.getrusage(resource.RUSAGE_THREAD)
                what = f"{start} -> {_where(owner)}" if isinstance(owner, asyncio.Task) else repr(owner)[:300]
                watch.slow.append(Run(what, wall, time.thread_time() - cpu, after.ru_nivcsw - before.ru_nivcsw))

    reports = _Reports(watch)
    logger = logging.getLogger("asyncio")
    logger.addHandler(reports)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    asyncio.events.Handle._run = measured  # type: ignore[method-assign]
    try:
        yield watch
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]
        sys.setswitchinterval(interval)
        logger.removeHandler(reports)


def _where(task: asyncio.Task) -> str:
    """Where a task's step ended: its innermost awaiting coroutine's file and line."""
    coro: Any = task.get_coro()
    where = repr(task)[:120]
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        where = f"{coro.cr_frame.f_code.co_filename}:{coro.cr_frame.f_lineno} ({coro.cr_code.co_name})"
        coro = coro.cr_await
    return where


def run_watched(main: Any) -> LoopWatch:
    """Run ``main()`` on a loop in debug mode, its callbacks measured."""

    async def watched() -> Any:
        asyncio.get_running_loop().slow_callback_duration = LIMIT
        watch.on = True
        await asyncio.sleep(0)  # main starts in a callback of its own, measured
        try:
            return await main()
        finally:
            watch.on = False

    with watching_the_loop() as watch:
        asyncio.run(watched(), debug=True)
    return watch


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "replica.db")


@pytest.fixture(scope="module")
def sync_server():
    pytest.importorskip("psycopg")
    from running_server import running_server

    with running_server() as server:
        yield server
