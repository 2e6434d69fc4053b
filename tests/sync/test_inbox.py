"""The transport's incoming queue: bounded for messages, never for wake-ups or the end."""

from __future__ import annotations

import threading
import time

import pytest

from syncstore.sync.inbox import Inbox

WAIT = 10.0


def wait_until(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def put_in_thread(inbox: Inbox, item, size: int) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(inbox.put(item, size)), daemon=True)
    thread.start()
    return thread, result


def test_the_reader_waits_for_room_by_count():
    inbox: Inbox[str] = Inbox(max_messages=2, max_bytes=1 << 20)
    assert inbox.put("a", 1) and inbox.put("b", 1)
    thread, result = put_in_thread(inbox, "c", 1)
    assert wait_until(lambda: inbox.blocked == 1)
    assert thread.is_alive() and len(inbox) == 2
    assert inbox.get(0) == (False, "a")
    thread.join(WAIT)
    assert result == [True] and len(inbox) == 2
    assert [inbox.get(0) for _ in range(3)] == [(False, "b"), (False, "c"), (False, None)]


def test_the_reader_waits_for_room_by_bytes_but_one_large_frame_passes_alone():
    inbox: Inbox[str] = Inbox(max_messages=100, max_bytes=10)
    assert inbox.put("big", 50)  # larger than the bound, but the queue is empty
    thread, result = put_in_thread(inbox, "small", 1)
    assert wait_until(lambda: inbox.blocked == 1)
    assert inbox.queued_bytes == 50
    assert inbox.get(0) == (False, "big")
    thread.join(WAIT)
    assert result == [True] and inbox.queued_bytes == 1


def test_a_wake_never_blocks_and_is_not_lost_when_the_queue_is_full():
    inbox: Inbox[str] = Inbox(max_messages=1, max_bytes=1 << 20)
    inbox.put("a", 1)
    thread, _ = put_in_thread(inbox, "b", 1)
    assert wait_until(lambda: inbox.blocked == 1)
    woke = threading.Thread(target=lambda: [inbox.wake() for _ in range(3)])
    woke.start()
    woke.join(WAIT)
    assert not woke.is_alive()  # the writers that wake never wait
    # Three wakes are one, and it comes before the queued message.
    assert inbox.get(0) == (True, None)
    assert inbox.get(0) == (False, "a")
    thread.join(WAIT)
    assert inbox.get(0) == (False, "b")
    assert inbox.get(0) == (False, None)


def test_the_end_of_the_stream_is_never_blocked_and_comes_last():
    inbox: Inbox[str] = Inbox(max_messages=1, max_bytes=1 << 20)
    inbox.put("a", 1)
    inbox.put_last("closed")
    assert inbox.get(0) == (False, "a")
    assert inbox.get(0) == (False, "closed")


def test_closing_releases_a_waiting_reader_and_drops_its_message():
    inbox: Inbox[str] = Inbox(max_messages=1, max_bytes=1 << 20)
    inbox.put("a", 1)
    thread, result = put_in_thread(inbox, "b", 1)
    assert wait_until(lambda: inbox.blocked == 1)
    inbox.close()
    thread.join(WAIT)
    assert result == [False]
    assert not inbox.put("c", 1)


@pytest.mark.parametrize("bad", [dict(max_messages=0), dict(max_bytes=0)])
def test_bounds_must_be_positive(bad):
    with pytest.raises(ValueError):
        Inbox(**bad)
