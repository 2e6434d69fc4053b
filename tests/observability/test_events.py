"""Events: values as the schema stores them, the batched writer, and what survives."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import apsw
import msgspec
import pytest

import syncstore
from syncstore import schema
from syncstore.errors import ReplicaLockedError, ValidationError
from syncstore.event_writer import COLUMNS, append_rows

# --- what is stored -----------------------------------------------------------------


def test_an_event_is_stored_with_every_field(store):
    when = dt.datetime(2025, 7, 17, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
    store.events.emit(
        "tool.call",
        severity="warn",
        component="search",
        operation="query",
        duration_ms=12,
        data={"b": 2, "a": [1, "x"]},
        execution_id="exec-1",
        correlation_id="corr-1",
        trace_id="t" * 32,
        span_id="s" * 16,
        parent_span_id="p" * 16,
        error_code="E1",
        error_message="slow",
        error_stack="line 1",
        timestamp=when,
    )
    store.events.flush()  # a raw query does not flush; the events API's reads do
    (row,) = store.query("select * from observability_events")
    assert row["event_type"] == "tool.call"
    assert row["timestamp"] == "2025-07-17T10:00:00.123456Z"
    assert row["severity"] == "warn"
    assert (row["component"], row["operation"], row["duration_ms"]) == ("search", "query", 12.0)
    assert row["data"] == '{"a":[1,"x"],"b":2}'  # canonical JSON: compact, sorted keys
    assert (row["execution_id"], row["correlation_id"]) == ("exec-1", "corr-1")
    assert (row["trace_id"], row["span_id"], row["parent_span_id"]) == ("t" * 32, "s" * 16, "p" * 16)
    assert (row["error_code"], row["error_message"], row["error_stack"]) == ("E1", "slow", "line 1")
    assert uuid.UUID(row["id"]).version == 7
    # Every stored value is what the schema's own validation would store.
    tbl = schema.table("observability_events")
    stored = {name: row[name] for name in tbl.column_names}
    assert schema.validate_row(tbl, stored, insert=True) == stored


@pytest.mark.parametrize(
    "when",
    ["2025-07-17T12:00:00.5+02:00", dt.datetime(2025, 7, 17, 10, 0, 0, 500000, tzinfo=dt.timezone.utc), 1752746400500000000],
)
def test_timestamps_in_every_accepted_form_store_alike(store, when):
    store.events.emit("tick", timestamp=when)
    store.events.flush()
    (row,) = store.query("select timestamp from observability_events")
    assert row["timestamp"] == "2025-07-17T10:00:00.500000Z"


def test_event_ids_are_version_7_and_carry_the_events_millisecond(store):
    first, second = 1_000_000_000_000_000_000, 1_000_000_000_001_000_000
    for ns in (second, first):
        store.events.emit("tick", timestamp=ns)
    ids = [e.id for _, e in store.events.tail(last=2)]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [u.int >> 80 for u in parsed] == [second // 1_000_000, first // 1_000_000]
    assert ids[1] < ids[0]  # ordered by event time, not by arrival


def test_one_batch_across_milliseconds_and_seconds_stores_each_events_own_time(store):
    # The writer formats a millisecond and a second once and reuses them for the
    # next events: each event must still get its own id prefix and timestamp.
    edges = [
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc),
        dt.datetime(1970, 1, 1, 0, 0, 0, 0, tzinfo=dt.timezone.utc),
        dt.datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc),
        dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc),
    ]
    base = dt.datetime(2025, 7, 17, 10, 0, 0, 998_000, tzinfo=dt.timezone.utc)
    steps = [base + dt.timedelta(microseconds=us) for us in (0, 1, 999, 1000, 1500, 2000, 2001, 1_000_000)]
    moments = edges[:2] + steps + [steps[0]] + edges[2:]  # the same millisecond again after others
    store.events.configure(flush_interval=3600, batch_size=100, max_buffer=100)
    for i, when in enumerate(moments):
        store.events.emit("tick", timestamp=when, data={"i": i})
    assert store.events.flush() == len(moments)
    rows = store.query("select id, timestamp from observability_events order by rowid")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    for row, when in zip(rows, moments):
        assert row["timestamp"] == schema.format_timestamp(when)
        parsed = uuid.UUID(row["id"])
        assert str(parsed) == row["id"] and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert parsed.int >> 80 == ((when - epoch) // dt.timedelta(milliseconds=1)) & 0xFFFF_FFFF_FFFF
    assert len({row["id"] for row in rows}) == len(rows)

@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(severity="fatal"), "severity"),
        (dict(component=3), "component"),
        (dict(operation="a\x00b"), "operation"),
        (dict(duration_ms=-1), "duration_ms"),
        (dict(duration_ms=float("nan")), "duration_ms"),
        (dict(duration_ms=True), "duration_ms"),
        (dict(data={"x": object()}), "data"),
        (dict(timestamp=dt.datetime(2025, 1, 1)), "timestamp"),
        (dict(timestamp="yesterday"), "timestamp"),
    ],
)
def test_a_bad_value_is_refused_at_the_call_and_nothing_is_queued(store, kwargs, field):
    with pytest.raises(ValidationError) as refused:
        store.events.emit("x", **kwargs)
    assert refused.value.field == field
    assert store.events.pending == 0
    assert store.events.count() == 0


def test_an_empty_event_type_is_refused(store):
    with pytest.raises(ValidationError):
        store.events.emit("")


def test_events_are_append_only(store):
    store.events.emit("x")
    store.events.flush()
    (row,) = store.query("select id from observability_events")
    with pytest.raises(ValidationError):
        store.update("observability_events", row["id"], {"severity": "error"})
    with pytest.raises(ValidationError):
        store.delete("observability_events", row["id"])


# --- the fast path writes what the generic insert writes ----------------------------


def _rows(n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        values = {name: None for name in COLUMNS}
        values.update(
            id=str(uuid.UUID(int=(0x01A215E8_0000_7000_8000_000000000000 + i))),
            event_type="step",
            timestamp=f"2025-07-17T10:00:00.{i:06d}Z",
            severity=("info", "error")[i % 2],
            component="planner",
            duration_ms=float(i),
            data='{"i":%d}' % i,
            execution_id=None if i % 3 else "exec",
        )
        rows.append(tuple(values[name] for name in COLUMNS))
    return rows


def test_the_fast_path_logs_exactly_what_insert_many_logs(tmp_path):
    rows = _rows(25)
    fast, generic = syncstore.open(str(tmp_path / "fast.db")), syncstore.open(str(tmp_path / "generic.db"))
    heard: dict[str, list] = {"fast": [], "generic": []}
    fast.subscribe("observability_events", heard["fast"].extend)
    generic.subscribe("observability_events", heard["generic"].extend)
    append_rows(fast, rows)
    generic.insert_many("observability_events", [dict(zip(COLUMNS, row)) for row in rows])
    for name in ("fast", "generic"):
        assert len(heard[name]) == 25
    assert heard["fast"] == heard["generic"]
    logged = "select seq, tx, tbl, pk, cols, seen from _ss_changes order by seq"
    assert fast.query(logged) == generic.query(logged)  # byte for byte, sequence and transaction too
    table = "select *, _clocks from observability_events order by rowid"
    strip = lambda found: [{k: v for k, v in r.items() if k not in ("_hlc", "_site")} for r in found]  # noqa: E731
    assert strip(fast.query(table)) == strip(generic.query(table))
    stamps = [r["hlc"] for r in fast.query("select hlc from _ss_changes order by seq")]
    assert stamps == sorted(set(stamps))  # one fresh stamp per row, in order
    assert fast.clock.last == stamps[-1]
    assert [r["_hlc"] for r in fast.query("select _hlc from observability_events order by rowid")] == stamps
    fast.close()
    generic.close()


def test_a_fast_path_batch_inside_a_rolled_back_transaction_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            append_rows(store, _rows(3))
            raise RuntimeError("roll back")
    assert store.query("select count(*) as n from observability_events")[0]["n"] == 0
    assert store.changes() == []
    append_rows(store, _rows(2))
    assert [c.seq for c in store.changes()] == [1, 2]


# --- batching and flushing ----------------------------------------------------------


def test_events_wait_in_the_buffer_until_a_flush(store, reader):
    store.events.configure(flush_interval=3600, batch_size=1000, max_buffer=1000)
    for i in range(10):
        store.events.emit("step", data={"i": i})
    assert store.events.pending == 10
    assert reader.count() == 0  # nothing committed yet: the caller only queued
    assert store.events.flush() == 10
    assert reader.count() == 10
    order = [msgspec.json.decode(r[0])["i"] for r in reader.conn.execute("select data from observability_events order by rowid")]
    assert order == list(range(10))


def test_the_background_thread_flushes_at_the_interval(store, reader):
    store.events.configure(flush_interval=0.05)
    store.events.emit("heartbeat")
    assert reader.wait_for(lambda: reader.count() == 1)
    assert store.events.pending == 0


def test_a_full_batch_wakes_the_writer_early(store, reader):
    store.events.configure(flush_interval=3600, batch_size=5, max_buffer=100)
    for _ in range(5):
        store.events.emit("step")
    assert reader.wait_for(lambda: reader.count() == 5)


def test_a_full_buffer_is_flushed_by_the_caller(store, reader):
    store.events.configure(flush_interval=3600, batch_size=10, max_buffer=10)
    for _ in range(11):
        store.events.emit("step")
    # The 11th call found the buffer full and wrote it before queueing itself.
    assert reader.count() >= 10
    assert store.events.writer.dropped == 0


def test_errors_are_written_before_emit_returns(store, reader):
    store.events.configure(flush_interval=3600)
    store.events.emit("step")
    store.events.emit("crash.imminent", severity="critical")
    assert reader.count() == 2  # the critical one took the buffered one with it


def test_durable_severities_can_be_changed(store, reader):
    store.events.configure(flush_interval=3600, durable_severities=("warn", "error", "critical"))
    store.events.emit("degraded", severity="warn")
    assert reader.count() == 1
    with pytest.raises(ValidationError):
        store.events.configure(durable_severities=("loud",))


def test_closing_the_store_writes_the_buffer(replica_path):
    store = syncstore.open(replica_path)
    store.events.configure(flush_interval=3600)
    for i in range(7):
        store.events.emit("step", data={"i": i})
    store.close()
    with syncstore.open(replica_path) as again:
        assert again.events.count() == 7
    with pytest.raises(syncstore.ReplicaError):
        store.events.emit("after close")


def test_a_with_block_writes_the_buffer_too(replica_path):
    with syncstore.open(replica_path) as store:
        store.events.configure(flush_interval=3600)
        store.events.emit("step")
    with syncstore.open(replica_path) as again:
        assert again.events.count() == 1


def test_a_failed_flush_keeps_the_events_in_order_for_the_next(tmp_path):
    path = str(tmp_path / "locked.db")
    store = syncstore.open(path, busy_timeout_ms=20)
    store.events.configure(flush_interval=3600)
    other = apsw.Connection(path)
    other.execute("begin immediate")  # another process holds the write lock
    for i in range(3):
        store.events.emit("step", data={"i": i})
    with pytest.raises(ReplicaLockedError):
        store.events.flush()
    assert store.events.pending == 3
    store.events.emit("step", data={"i": 3})
    other.execute("rollback")
    assert store.events.flush() == 4
    order = [e.data["i"] for _, e in store.events.tail(last=10)]
    assert order == [0, 1, 2, 3]
    other.close()
    store.close()


def test_reads_through_the_api_see_buffered_events(store):
    store.events.configure(flush_interval=3600)
    store.events.emit("mine", correlation_id="c-1")
    assert [e.event_type for e in store.events.for_correlation("c-1")] == ["mine"]


# --- process exits and crashes (real processes) -------------------------------------


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120)


def test_a_normal_exit_without_close_writes_the_buffer(replica_path):
    done = _run(
        f"""
        import syncstore
        store = syncstore.open({replica_path!r})
        store.events.configure(flush_interval=3600)
        for i in range(25):
            store.events.emit("step")
        """
    )
    assert done.returncode == 0, done.stderr
    with syncstore.open(replica_path) as store:
        assert store.events.count() == 25


def test_a_hard_crash_loses_only_what_was_not_flushed(replica_path):
    done = _run(
        f"""
        import os, syncstore
        store = syncstore.open({replica_path!r})
        store.events.configure(flush_interval=3600)
        for i in range(40):
            store.events.emit("kept")
        store.events.flush()
        for i in range(15):
            store.events.emit("lost")
        os._exit(0)  # no atexit, no close: as kill -9 would
        """
    )
    assert done.returncode == 0, done.stderr
    with syncstore.open(replica_path) as store:
        assert store.query("select event_type, count(*) as n from observability_events group by event_type") == [
            {"event_type": "kept", "n": 40}
        ]
        assert len(store.changes()) == 40  # each kept event is also in the change log, ready to sync


def test_events_older_than_an_interval_survive_kill_9(replica_path):
    done = _run(
        f"""
        import os, signal, time, syncstore
        store = syncstore.open({replica_path!r})
        store.events.configure(flush_interval=0.05)
        for i in range(30):
            store.events.emit("step")
        while store.events.writer.written < 30:  # the interval flush, not an explicit one
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert done.returncode == -9, done.stderr
    with syncstore.open(replica_path) as store:
        assert store.events.count() == 30


# --- errors as events ---------------------------------------------------------------


def test_an_error_is_recorded_with_its_code_fields_stack_and_correlation_id(store):
    try:
        raise syncstore.ExternalServiceError("embedder answered 503", service="embedder", status=503)
    except syncstore.ExternalServiceError as exc:
        cid = store.events.error(exc, component="memory", operation="embed")
        caught = exc
    assert caught.correlation_id == cid  # whoever handles it next can quote it
    (event,) = store.events.for_correlation(cid)
    assert event.severity == "error" and event.event_type == "error"
    assert event.error_code == "external_service"
    assert event.error_message == "embedder answered 503"
    assert "raise syncstore.ExternalServiceError" in event.error_stack
    assert event.data["service"] == "embedder" and event.data["status"] == 503
    assert event.data["retryable"] is True
    assert event.data["exception_type"] == "syncstore.errors.ExternalServiceError"
    assert (event.component, event.operation) == ("memory", "embed")


def test_an_error_keeps_the_correlation_id_it_already_has(store):
    exc = ValueError("bad input")
    exc.correlation_id = "request-77"
    assert store.events.error(exc) == "request-77"
    (event,) = store.events.for_correlation("request-77")
    assert event.error_code == "ValueError"  # a foreign error: its type name


def test_a_given_correlation_id_wins(store):
    assert store.events.error(KeyError("k"), correlation_id="given") == "given"
    assert store.events.for_correlation("given")[0].error_message == "'k'"


# --- the writer's own connection and the application's --------------------------------


def test_readers_on_the_store_are_never_disturbed_by_the_writer_thread(store, caplog):
    store.events.configure(flush_interval=0.001, batch_size=5)
    store.tasks.create("a task to read")
    failures: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                assert len(store.tasks.list()) == 1
                # A long-lived cursor: a writer thread using this connection now
                # would collide with it (apsw refuses concurrent use).
                for _ in store.connection.execute("with recursive c(x) as (select 1 union all select x + 1 from c where x < 20000) select x from c"):
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    # One reader: two threads sharing one apsw connection is the application's
    # own business; this checks that the writer thread never joins them.
    readers = [threading.Thread(target=read)]
    for thread in readers:
        thread.start()
    try:
        for burst in range(300):  # many small flushes while the reader works
            for i in range(10):
                store.events.emit("step", data={"i": burst * 10 + i})
            time.sleep(0.001)
    finally:
        stop.set()
        for thread in readers:
            thread.join(30)
    assert failures == []
    assert [r.message for r in caplog.records if r.name == "syncstore.events"] == []  # no failed flush either
    assert store.events.count() == 3000


def test_the_stores_subscribers_hear_of_written_events(store):
    heard: list = []
    store.subscribe("observability_events", heard.extend)
    for _ in range(3):
        store.events.emit("step")
    store.events.flush()
    assert [(c.table, c.op, c.origin) for c in heard] == [("observability_events", "insert", "local")] * 3


def test_an_error_inside_an_open_transaction_is_written_after_the_commit(store, reader):
    store.events.configure(flush_interval=0.01)
    with store.transaction():
        store.tasks.create("in the same transaction")
        store.events.emit("failed step", severity="error")  # must not wait on our own lock
        assert [e.event_type for e in store.events.for_correlation("nothing")] == []  # reads do not wait either
    assert reader.wait_for(lambda: reader.count() == 1)


def test_a_store_in_memory_writes_events_on_the_callers_thread():
    with syncstore.open(":memory:") as store:
        store.events.configure(flush_interval=3600, batch_size=3)
        store.events.emit("one")
        store.events.emit("two")
        assert store.query("select count(*) as n from observability_events")[0]["n"] == 0
        store.events.emit("three")  # a full batch is written at once
        assert store.query("select count(*) as n from observability_events")[0]["n"] == 3
        store.events.emit("four", severity="critical")
        assert store.query("select count(*) as n from observability_events")[0]["n"] == 4
        assert store.events.writer._thread is None  # no thread: nothing else may use this connection


def test_text_sqlite_cannot_take_is_refused_at_the_call(store):
    with pytest.raises(ValidationError):
        store.events.emit("x", component="half a surrogate \udc80")
    with pytest.raises(ValidationError):
        store.events.emit("\udc80")
    with pytest.raises(ValidationError):
        store.events.emit("x", timestamp=10**22)  # nanoseconds past the year 9999
    assert store.events.pending == 0


def test_one_unstorable_event_does_not_hold_up_the_others(store, caplog):
    store.events.configure(flush_interval=3600)
    store.events.emit("before")
    # An item that got past the checks and that SQLite cannot bind (a set).
    poison = (1_752_746_400_000_000_000, None, "poison", "info", {"a set"}, *([None] * 9), "{}")
    store.events.writer.put(poison)
    store.events.emit("after")
    assert store.events.flush() == 2
    assert [e.event_type for _, e in store.events.tail(last=5)] == ["before", "after"]
    assert store.events.writer.dropped == 1
    assert any("dropped an event" in r.message for r in caplog.records)
