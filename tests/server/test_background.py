"""Background loops stop for certain, even when a cancellation is lost.

``asyncio.wait_for`` on Python 3.11 can return the inner result instead of
raising the cancellation that arrived at the same moment; the connection pool
waits through it. The tests lose a cancellation the same way (an inner await
that catches it and returns) and check the loop still ends."""

from __future__ import annotations

import asyncio
import logging

from syncstore_server import background
from syncstore_server.direct_writes import DirectWrites
from syncstore_server.store import open_store


async def lossy_wait() -> int:
    """An await that loses a cancellation, as wait_for can when the inner result is ready."""
    try:
        await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        pass
    return 0


def test_a_loop_that_lost_its_cancellation_still_stops():
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while not background.stopping():
            rounds += 1
            await lossy_wait()

    async def main() -> bool:
        task = asyncio.create_task(loop())
        await asyncio.sleep(0.12)
        await background.stop(task, what="the test loop", timeout_s=5)
        return task.done()

    assert asyncio.run(main()) and rounds >= 2


def test_stop_gives_up_after_its_timeout_and_says_so(caplog):
    release = None

    async def stubborn() -> None:
        while True:  # ignores cancellation entirely
            try:
                await release.wait()
                return
            except asyncio.CancelledError:
                continue

    async def main() -> bool:
        nonlocal release
        release = asyncio.Event()
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await background.stop(task, what="the stubborn loop", timeout_s=0.1)
        left = not task.done()
        release.set()
        await task
        return left

    with caplog.at_level(logging.WARNING, logger="syncstore.server"):
        assert asyncio.run(main())
    assert any("the stubborn loop did not stop within 0.1 s" in r.getMessage() for r in caplog.records)


def test_the_direct_write_publisher_stops_though_a_publish_lost_the_cancellation(migrated):
    class Lossy(DirectWrites):
        async def publish(self) -> int:
            await super().publish()
            return await lossy_wait()

    async def main() -> bool:
        async with open_store(migrated) as store:
            publisher = Lossy(store, migrated, sweep_interval_s=0.01)
            await publisher.start()
            await asyncio.sleep(0.2)  # a few rounds
            task = publisher._task
            await asyncio.wait_for(publisher.stop(), 15)
            return task is not None and task.done()

    assert asyncio.run(main())
