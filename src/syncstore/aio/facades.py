"""Awaitable versions of the store's domain APIs: ``await store.tasks.create(...)``.

:class:`Facade` turns every public method of a synchronous API object
(:class:`~syncstore.tasks.Tasks`, :class:`~syncstore.memory.Memory`, ...) into
a coroutine function that runs the method in the store's worker thread, so a
new method of a domain API is awaitable here without being listed. The API
object itself is made in the worker on first use (making some of them opens
files or starts threads). Where the synchronous API hands out something that
does I/O later (a tracked run, a stream of events), the facade hands out an
asynchronous one instead: :class:`AsyncRun`, :meth:`AsyncEvents.follow`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from syncstore.aio.worker import Worker
from syncstore.tracking import _CURRENT, Run, jsonable

if TYPE_CHECKING:
    from syncstore.events import Event
    from syncstore.executions import Execution, Executions


class Facade:
    """Every public method of ``kind`` (the class of what ``make()`` returns),
    as a coroutine function run in ``worker``; other attributes as they are."""

    def __init__(self, worker: Worker, make: Callable[[], Any], kind: type):
        self._worker = worker
        self._make = make
        self._kind = kind
        self._target: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._target is None:
                self._target = self._make()
            return self._target

    def _call(self, name: str) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._worker.run(lambda: getattr(self._get(), name)(*args, **kwargs))

        call.__name__ = call.__qualname__ = name
        call.__doc__ = getattr(getattr(self._kind, name, None), "__doc__", None)
        return call

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        found = inspect.getattr_static(self._kind, name, None)
        if inspect.isfunction(found) or isinstance(found, (staticmethod, classmethod)):
            method = self._call(name)
            setattr(self, name, method)  # made once per name
            return method
        return getattr(self._get(), name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *(n for n in dir(self._kind) if not n.startswith("_"))})

    def __repr__(self) -> str:
        return f"<async {self._kind.__name__}>"


class AsyncRun(Run):
    """A tracked run for ``async with`` (from ``store.executions.track(...)``):
    the execution is written in the worker thread; the running execution is set
    in the caller's task, so events and spans started in the block link to it."""

    def __init__(self, worker: Worker, executions: Executions, agent_type: str, fields: dict[str, Any]):
        super().__init__(executions, agent_type, fields)
        self._worker = worker

    async def __aenter__(self) -> AsyncRun:
        await self._worker.run(self._begin)
        self._token = _CURRENT.set(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._token is not None:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # left in another context
                _CURRENT.set(None)
            self._token = None
        # The outcome is written even when the block was cancelled mid-way.
        await asyncio.shield(self._worker.run(self._end, exc))

    def __enter__(self) -> AsyncRun:
        raise TypeError("an async run is entered with 'async with'")

    async def event(self, event_type: str, **fields: Any) -> None:  # type: ignore[override]
        """Emit an event linked to this run."""
        await self._worker.run(Run.event, self, event_type, **fields)

    async def fail(self, error: str | BaseException) -> Execution:  # type: ignore[override]
        """End the run as failed now."""
        return await self._worker.run(Run.fail, self, error)

    async def cancel(self, reason: str | None = None) -> Execution:  # type: ignore[override]
        """End the run as cancelled now."""
        return await self._worker.run(Run.cancel, self, reason)


class AsyncExecutions(Facade):
    """``store.executions``, awaitable; ``track`` is ``async with``."""

    def track(self, agent_type: str, **fields: Any) -> AsyncRun:
        """An ``async with`` block that records one run (see :mod:`syncstore.tracking`)."""
        return AsyncRun(self._worker, self._get(), agent_type, fields)

    def current(self) -> Run | None:
        """The run of this store whose block the caller is in, if any."""
        return self._get().current()

    def tracked(self, agent_type: str | Callable[..., Any] | None = None, *, capture_input: bool = True,
                capture_output: bool = True, **fields: Any) -> Any:  # fmt: skip
        """Decorate an ``async`` function so each call is a tracked run (as the
        synchronous ``tracked``, with the writes made in the worker thread)."""
        if callable(agent_type):
            return self.tracked()(agent_type)

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError("syncstore.aio's tracked decorates async functions; use the store's own for others")
            name = agent_type or fn.__qualname__
            signature = inspect.signature(fn)

            @functools.wraps(fn)
            async def run(*args: Any, **kwargs: Any) -> Any:
                given = None
                if capture_input:
                    bound = signature.bind_partial(*args, **kwargs)
                    given = jsonable({k: v for k, v in bound.arguments.items() if k not in ("self", "cls")})
                async with self.track(name, input=given, **fields) as tracked_run:
                    result = await fn(*args, **kwargs)
                    if capture_output and tracked_run.output is None:
                        tracked_run.output = jsonable(result)
                    return result

            return run

        return decorate


class AsyncEvents(Facade):
    """``store.events``, awaitable; ``follow`` is an async iterator."""

    async def follow(self, *, after: int | None = None, last: int = 0, poll_interval: float = 0.25,
                     **filters: Any) -> AsyncIterator[Event]:  # fmt: skip
        """Events as they arrive (as the synchronous ``follow``), polling every
        ``poll_interval`` seconds without holding the worker between polls."""
        events = self._get()
        if after is None:
            found = await self._worker.run(events.tail, last=last, **filters) if last else []
            after = found[-1][0] if found else await self._worker.run(events._max_rowid)
        else:
            found = []
        while True:
            for rowid, event in found:
                after = rowid
                yield event
            found = await self._worker.run(events.tail, after=after, limit=1000, **filters)
            if not found:
                await asyncio.sleep(poll_interval)
