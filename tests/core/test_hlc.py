"""The hybrid logical clock: packing, ticks, receives and the drift cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncstore.core import hlc
from syncstore.core.hlc import COUNTER_BITS, COUNTER_MAX, HybridClock, ServerTime, pack, unpack
from syncstore.errors import ClockDriftError, SyncstoreError

MS = st.integers(min_value=0, max_value=2**46)  # far past any real date, still < 2**63 packed
COUNTERS = st.integers(min_value=0, max_value=COUNTER_MAX)


class FakeTime:
    """A wall clock the test moves by hand, forwards or backwards."""

    def __init__(self, ms: int = 1_700_000_000_000):
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@given(MS, COUNTERS)
def test_pack_unpack_round_trip(ms, counter):
    assert hlc.unpack(hlc.pack(ms, counter)) == (ms, counter)


@given(MS, COUNTERS, MS, COUNTERS)
def test_packed_stamps_sort_like_their_parts(ms_a, c_a, ms_b, c_b):
    a, b = hlc.pack(ms_a, c_a), hlc.pack(ms_b, c_b)
    assert (a < b) == ((ms_a, c_a) < (ms_b, c_b))
    assert (a == b) == ((ms_a, c_a) == (ms_b, c_b))


@pytest.mark.parametrize("ms, counter", [(0, -1), (0, COUNTER_MAX + 1), (-1, 0)])
def test_pack_refuses_out_of_range_parts(ms, counter):
    with pytest.raises(ValueError):
        hlc.pack(ms, counter)


def test_from_ms_is_the_first_stamp_of_that_millisecond():
    assert hlc.from_ms(5) == 5 << COUNTER_BITS
    assert hlc.unpack(hlc.from_ms(5)) == (5, 0)


def test_tick_uses_wall_time_when_it_moved_on():
    now = FakeTime(1000)
    clock = HybridClock(now=now)
    assert hlc.unpack(clock.tick()) == (1000, 0)
    now.ms = 1005
    assert hlc.unpack(clock.tick()) == (1005, 0)


def test_tick_counts_within_one_millisecond():
    clock = HybridClock(now=FakeTime(1000))
    stamps = [clock.tick() for _ in range(3)]
    assert [hlc.unpack(s) for s in stamps] == [(1000, 0), (1000, 1), (1000, 2)]


def test_tick_keeps_counting_when_the_wall_clock_steps_back():
    now = FakeTime(1000)
    clock = HybridClock(now=now)
    first = clock.tick()
    now.ms = 900
    second = clock.tick()
    assert second > first
    assert hlc.unpack(second) == (1000, 1)


def test_a_full_counter_rolls_into_the_next_millisecond():
    clock = HybridClock(last=hlc.pack(1000, COUNTER_MAX), now=FakeTime(1000))
    assert hlc.unpack(clock.tick()) == (1001, 0)


def test_receive_moves_past_a_stamp_from_the_future():
    clock = HybridClock(now=FakeTime(1000))
    clock.tick()
    remote = hlc.pack(1500, 7)
    after = clock.receive(remote)
    assert after > remote
    assert clock.tick() > remote


def test_receive_of_an_old_stamp_still_moves_forward():
    clock = HybridClock(now=FakeTime(1000))
    before = clock.tick()
    assert clock.receive(hlc.pack(10, 0)) > before


def test_drift_cap_refuses_a_far_future_stamp_and_changes_nothing():
    clock = HybridClock(now=FakeTime(1000), max_drift_ms=100)
    before = clock.tick()
    with pytest.raises(ClockDriftError) as caught:
        clock.receive(hlc.pack(1101, 0))
    err = caught.value
    assert isinstance(err, SyncstoreError)
    assert (err.stamp_ms, err.now_ms, err.max_drift_ms) == (1101, 1000, 100)
    assert "101 ms in the future" in str(err) and "100 ms" in str(err)
    assert clock.last == before


def test_drift_cap_accepts_a_stamp_exactly_at_the_limit():
    clock = HybridClock(now=FakeTime(1000), max_drift_ms=100)
    assert clock.receive(hlc.pack(1100, COUNTER_MAX)) > hlc.pack(1100, COUNTER_MAX)


def test_check_alone_refuses_without_moving_the_clock():
    clock = HybridClock(now=FakeTime(1000), max_drift_ms=0)
    clock.check(hlc.pack(1000, 5))
    with pytest.raises(ClockDriftError):
        clock.check(hlc.pack(1001, 0))
    assert clock.last == 0


def test_tick_many_hands_out_a_run_of_stamps():
    clock = HybridClock(now=FakeTime(1000))
    first = clock.tick_many(3)
    assert hlc.unpack(first) == (1000, 0) and clock.last == first + 2
    assert clock.tick() == first + 3
    with pytest.raises(ValueError):
        clock.tick_many(0)


def test_observe_never_moves_the_clock_back():
    clock = HybridClock(now=FakeTime(1000))
    clock.observe(hlc.pack(2000, 0))
    clock.observe(hlc.pack(1500, 0))
    assert clock.last == hlc.pack(2000, 0)
    assert clock.tick() > hlc.pack(2000, 0)


# One step of a clock's life: a local tick, a receive, an observe, or the wall clock jumping.
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.just(0)),
        st.tuples(st.just("tick_many"), st.integers(min_value=1, max_value=70_000)),
        st.tuples(st.just("receive"), st.integers(min_value=-5_000, max_value=5_000)),
        st.tuples(st.just("observe"), st.integers(min_value=-5_000, max_value=5_000)),
        st.tuples(st.just("wall"), st.integers(min_value=-3_000, max_value=3_000)),
    ),
    max_size=60,
)


@given(STEPS, st.integers(min_value=0, max_value=COUNTER_MAX))
def test_clock_never_goes_backwards(steps, start_counter):
    now = FakeTime(1_000_000)
    clock = HybridClock(last=hlc.pack(now.ms, start_counter), now=now, max_drift_ms=1_000)
    previous = clock.last
    for op, offset in steps:
        if op == "wall":
            now.ms += offset
            continue
        stamp = hlc.pack(now.ms + offset, 3)
        if op == "tick":
            produced = clock.tick()
            assert produced > previous
        elif op == "tick_many":
            first = clock.tick_many(offset)
            assert first > previous and clock.last == first + offset - 1
        elif op == "observe":
            clock.observe(stamp)
            assert clock.last >= stamp
        elif offset > clock.max_drift_ms:
            with pytest.raises(ClockDriftError):
                clock.receive(stamp)
        else:
            produced = clock.receive(stamp)
            assert produced > previous and produced > stamp
        assert clock.last >= previous
        previous = clock.last


def test_a_clock_given_the_servers_time_refuses_to_tick_past_its_cap():
    wall = [1_000_000]
    clock = HybridClock(now=lambda: wall[0])
    clock.server = ServerTime(server_ms=999_000, local_ms=1_000_000, max_drift_ms=5_000)
    assert unpack(clock.tick())[0] == 1_000_000  # 1 s ahead of the server: accepted
    clock.observe(pack(1_004_000, 0))  # the clock has run ahead since
    assert unpack(clock.tick())[0] == 1_004_000
    last = clock.last
    clock.observe(pack(1_004_000, 65_535))
    with pytest.raises(ClockDriftError) as refused:
        clock.tick_many(2)  # would roll into the next millisecond: past the cap
    assert "restamp" in str(refused.value)
    assert clock.last == pack(1_004_000, 65_535) and clock.last != last
    wall[0] += 1  # time passes, the server's too: room again
    assert unpack(clock.tick_many(2))[0] == 1_004_001
    clock.server = None
    clock.observe(pack(10_000_000, 0))
    assert clock.tick() > pack(10_000_000, 0)  # no server time: no limit


def test_server_time_counts_no_time_for_a_clock_set_back():
    server = ServerTime(server_ms=500, local_ms=1_000, max_drift_ms=60)
    assert server.now(1_400) == 900 and server.limit(1_400) == 960
    assert server.now(700) == 500  # stepped back: how much time passed is unknown
    assert ServerTime.decode(server.encode()) == server
    assert ServerTime.decode("garbage") is None and ServerTime.decode(None) is None


def test_reset_takes_an_earlier_stamp():
    clock = HybridClock(now=lambda: 0, last=pack(5_000, 3))
    clock.reset(pack(1_000, 0))
    assert clock.last == pack(1_000, 0)
    assert clock.tick() == pack(1_000, 1)
