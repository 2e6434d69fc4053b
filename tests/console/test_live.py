"""The live feed: ``/events`` names what changed, whether the console wrote it,
another connection to the file did (another process), or the sync link moved."""

from __future__ import annotations

import queue
import threading
import time

import httpx

import syncstore
from syncstore.console.live import EVERYTHING, ChangeFeed


class EventStream:
    """Reads ``/events`` in a thread; ``names()`` waits for the next event names."""

    def __init__(self, client):
        self._events: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self.opened = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(client,), daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the event stream did not open"

    def _read(self, client) -> None:
        try:
            with client.stream("GET", "/events", timeout=None) as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                for line in answer.iter_lines():
                    if line.startswith("retry:"):
                        self.opened.set()
                    if line.startswith("event: "):
                        self._events.put(line[len("event: "):])
                    if self._stop.is_set():
                        return
        except httpx.HTTPError:  # the console stopped at the end of the test
            return

    def until(self, wanted: set[str], timeout: float = 15) -> set[str]:
        """Collect event names until every one of ``wanted`` came; fail after ``timeout``."""
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while not wanted <= seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"never heard {sorted(wanted - seen)}; heard {sorted(seen)}")
            try:
                seen.add(self._events.get(timeout=remaining))
            except queue.Empty:
                continue
        return seen

    def drain(self) -> set[str]:
        names = set()
        while True:
            try:
                names.add(self._events.get_nowait())
            except queue.Empty:
                return names

    def close(self) -> None:
        self._stop.set()


def test_a_write_through_the_console_is_named_at_once(store, console):
    with console.client() as client:
        stream = EventStream(client)
        try:
            store.tasks.create("new")
            assert {"tasks", "sync"} <= stream.until({"tasks", "sync"})
            store.messages.add(store.tasks.list()[0].id, "user", "hi")
            assert "task_messages" in stream.until({"task_messages"})
        finally:
            stream.close()


def test_a_write_by_another_connection_is_found_by_polling(store, replica_path, console_for):
    console = console_for(store, poll_interval=0.1)
    with console.client() as client:
        stream = EventStream(client)
        try:
            stream.drain()
            with syncstore.open(replica_path) as other:  # another process would open its own, the same way
                other.executions.create("planner", status="running")
            # The other connection's commit is not announced in this process: the poll finds it.
            assert "agent_executions" in stream.until({"agent_executions", "sync"})
        finally:
            stream.close()


def test_the_feed_tells_every_listener_and_coalesces(store):
    import asyncio

    feed = ChangeFeed(store, poll_interval=60)

    async def scenario():
        first, second = feed.listen(), feed.listen()
        feed.publish(frozenset({"tasks"}))
        feed.publish(frozenset({"agent_executions"}))
        await asyncio.sleep(0)
        got = await first.next(1), await second.next(1)
        feed.forget(second)
        feed.publish(EVERYTHING)
        await asyncio.sleep(0)
        return got, await first.next(1), await second.next(0.05)

    (a, b), later, forgotten = asyncio.run(scenario())
    assert a == b == {"tasks", "agent_executions"}  # two commits, one wake-up each
    assert later == set(EVERYTHING) and forgotten == set()


def test_the_connection_coming_up_is_named_for_the_banner(store):
    import asyncio

    online = {"value": False}
    feed = ChangeFeed(store, online=lambda: online["value"], poll_interval=0.05)

    async def scenario():
        listener = feed.listen()
        feed.start()
        try:
            await asyncio.sleep(0.2)
            listener.pending.clear()
            online["value"] = True
            return await listener.next(10)
        finally:
            feed.stop()

    assert asyncio.run(scenario()) == {"sync"}
