"""Stopping the server's background loops for certain.

On Python 3.11, ``asyncio.wait_for`` returns the inner result when it
completes just as a cancellation arrives, and the cancellation is lost; the
connection pool waits through it. A loop that went on after that kept a
stopping server alive for ever (seen under SIGTERM in the soak). So every
background loop asks :func:`stopping` at the top of each round (a task's
cancel request stays counted even when its CancelledError was lost), and
:func:`stop` waits a bounded time whatever happens.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("syncstore.server")


def stopping() -> bool:
    """Whether the running task has been asked to stop (cancelled)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop(task: asyncio.Task[None] | None, *, what: str, timeout_s: float = 10.0) -> None:
    """Cancel ``task`` and wait for it to end, at most ``timeout_s``; its
    error, if it ended with one, is logged rather than raised."""
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("%s did not stop within %g s; leaving it behind", what, timeout_s)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with an error: %r", what, task.exception())
