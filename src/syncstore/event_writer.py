"""The batched writer behind :class:`syncstore.events.Events`.

Callers put finished event tuples into an in-memory buffer and return at
once; a background thread, on a connection of its own, writes the buffer into
``observability_events`` in few large transactions. The buffer is flushed

- every ``flush_interval`` seconds (default 0.1 s), by the background thread;
- early, when ``batch_size`` events are waiting (the thread is woken);
- by the caller itself when ``max_buffer`` events are waiting (back-pressure:
  a producer faster than the disk is slowed down rather than growing memory;
  inside an open write transaction of the store, where that would wait on the
  caller's own lock, the new event is dropped and counted in ``dropped``);
- at once for severities in ``durable_severities`` (errors by default), so the
  error that precedes a crash is on disk before the crash;
- on :meth:`EventWriter.close` (run by ``Store.close``, through its
  ``on_close`` hook) and at interpreter exit (``atexit``).

What a hard crash loses: the buffer lives in process memory, so ``kill -9``,
``os._exit`` or a segfault loses the events emitted since the last completed
flush: at most the last ``flush_interval`` in normal running, never more than
``max_buffer`` events. Everything already flushed is committed to SQLite and
survives the process. (A power loss or OS crash can additionally undo the
most recent commits, because the replica runs WAL with ``synchronous=NORMAL``.)

The rows are written by :func:`append_rows`: ``Replica.insert_many`` with
``checked=True``, since the events API validated each value when it was
emitted, so a flush costs what SQLite costs.
"""

from __future__ import annotations

import atexit
import collections
import datetime as dt
import logging
import os
import threading
import time
from typing import Any, Sequence

import apsw

from syncstore import schema
from syncstore.errors import ReplicaError, SyncstoreError, ValidationError
from syncstore.replica.store import Replica

log = logging.getLogger("syncstore.events")

TABLE = "observability_events"
COLUMNS = schema.table(TABLE).column_names
_EPOCH = dt.datetime(1970, 1, 1)  # naive on purpose: the text carries no offset, only the Z


def append_rows(store: Replica, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert complete, canonical ``observability_events`` rows (values in
    column order, ``id`` first) with change capture, in one transaction; each
    row gets its own fresh clock stamp, in order."""
    store.insert_many(TABLE, rows, checked=True)


# --- ids and timestamps made at flush time, cheaply ------------------------------

# UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, version 7, 12 random bits,
# variant 0b10, 62 random bits. One random hex digit picks the variant digit.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


# --- the writer -------------------------------------------------------------------


def _transient(exc: Exception) -> bool:
    """Storage trouble that a later flush may not meet (a lock, a full disk),
    as opposed to a value that can never be stored (an id that exists)."""
    if isinstance(exc, (apsw.ConstraintError, ValidationError)):
        return False
    return isinstance(exc, (apsw.Error, SyncstoreError))


def _in_memory(path: str) -> bool:
    return path in ("", ":memory:") or path.startswith("file::memory:") or "mode=memory" in path


class EventWriter:
    """A bounded buffer of pending events and the thread that writes it.

    A buffered item is ``(ns, execution_id, event_type, severity, ...)``: the
    event's time in nanoseconds since the epoch, then the stored values of the
    columns after ``timestamp``. The id and the timestamp text are made when
    the item is written, off the caller's path.

    The writer has its own connection to the replica file (an apsw connection
    must not be used by two threads at once, and the application keeps using
    the store's connection meanwhile); committed events are announced to the
    store's subscribers as the store's own writes are. A store in memory has
    no file to share: there the caller's thread writes, on the store's own
    connection, whenever an emit finds the interval passed or a batch full.
    """

    def __init__(
        self,
        store: Replica,
        *,
        flush_interval: float = 0.1,
        batch_size: int = 2_000,
        max_buffer: int = 100_000,
        max_transaction: int = 10_000,
    ):
        if flush_interval <= 0 or batch_size < 1 or max_buffer < batch_size or max_transaction < 1:
            raise ValueError("need flush_interval > 0, batch_size >= 1, max_buffer >= batch_size, max_transaction >= 1")
        self.store = store
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.max_transaction = max_transaction
        self.written = 0  # events committed by this writer
        self.dropped = 0  # events refused: the buffer was full and could not be written
        self.closed = False
        self.inline = _in_memory(store.path)
        # deque.append and popleft are atomic, so callers never take a lock.
        self._buffer: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flusher at a time; a reader waits for it
        self._in_flight = 0  # events taken from the buffer and not yet committed
        self._thread: threading.Thread | None = None
        self._started = False
        self._own: Replica | None = None
        self._failing = False
        self._pid = os.getpid()
        self._last_flush_ns = time.time_ns()

    # --- the caller's side ----------------------------------------------------------

    def put(self, item: tuple[Any, ...], *, urgent: bool = False) -> None:
        """Queue one event; cheap unless the buffer is full or ``urgent``."""
        if not self._started or self.closed:
            self._start()
        buffer = self._buffer
        if len(buffer) >= self.max_buffer:
            if self.may_flush_here():
                self._flush_quietly()
            if len(buffer) >= self.max_buffer:
                self.dropped += 1
                self._wake.set()
                return
        buffer.append(item)
        if urgent or len(buffer) >= self.batch_size:
            if self.may_flush_here() and (urgent or self.inline):
                self._flush_quietly()
            else:
                self._wake.set()
        elif self.inline and item[0] - self._last_flush_ns >= self.flush_interval * 1e9:
            self._flush_quietly()

    def may_flush_here(self) -> bool:
        # With the store's write transaction open (on any thread), the writer's
        # connection would wait for it, possibly on this very thread: leave the
        # write to the background thread, which waits for the commit.
        return self.inline or not self.store.in_transaction

    @property
    def pending(self) -> int:
        """Events emitted and not yet committed (buffered or being written)."""
        return len(self._buffer) + self._in_flight

    def flush(self) -> int:
        """Write everything buffered now; returns how many events were written.

        Each batch is one transaction on the writer's connection, whose write
        lock also keeps two flushers apart. Storage errors are raised here; the
        events stay buffered, in order, for the next flush.
        """
        written = 0
        buffer = self._buffer
        if not buffer and not self._in_flight:
            return 0
        target = self._own or self.store
        # In memory the store's own transaction lock orders flushers (the store's
        # lock is the only one taken); on a file, the flush lock makes a caller
        # wait for a flush under way on the writer thread before it reads.
        with self.store.transaction() if self.inline else self._flush_lock:
            while buffer:
                batch: list[tuple[Any, ...]] = []
                try:
                    with target.transaction():
                        count = min(len(buffer), self.max_transaction)
                        batch = [buffer.popleft() for _ in range(count)]
                        self._in_flight = count
                        append_rows(target, self._rows(batch))
                    done = len(batch)
                except Exception as exc:
                    if _transient(exc):
                        buffer.extendleft(reversed(batch))
                        raise
                    done = self._one_by_one(target, batch)
                except BaseException:
                    buffer.extendleft(reversed(batch))
                    raise
                finally:
                    self._in_flight = 0
                written += done
                self.written += done
        self._last_flush_ns = time.time_ns()
        return written

    def _one_by_one(self, target: Replica, batch: list[tuple[Any, ...]]) -> int:
        """Write a batch that failed for a reason other than storage, one event
        at a time, dropping (and logging) those refused: a value that passed the
        emit checks and still cannot be stored must not hold up every later event."""
        written = 0
        for at, item in enumerate(batch):
            try:
                with target.transaction():
                    append_rows(target, self._rows([item]))
                written += 1
            except Exception as exc:
                if _transient(exc):
                    self._buffer.extendleft(reversed(batch[at:]))
                    raise
                self.dropped += 1
                log.error("dropped an event the replica refused (%s: %s): %r", type(exc).__name__, exc, item[:3])
        return written

    def close(self) -> None:
        """Stop the thread, write what is left, close the writer's connection. Idempotent."""
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            self._wake.set()
            # Bounded: a caller closing the store inside its own open transaction
            # would otherwise wait forever for a thread that waits for that lock.
            thread.join(timeout=30)
        try:
            if os.getpid() == self._pid:  # a forked child must not write its parent's buffer
                self.flush()
        finally:
            if self._own is not None:
                self._own.close()

    # --- the background side --------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self.closed:
                raise ReplicaError(f"{self.store.path}: events cannot be written after the store is closed")
            if self.store.readonly:
                raise ReplicaError(f"{self.store.path}: opened read-only; events cannot be written")
            if self._started:
                return
            if not self.inline:
                # The writer thread has a connection of its own (never the
                # store's), waiting for other writers as long as the store's does.
                own = Replica(self.store.path, busy_timeout_ms=self.store.busy_timeout_ms)
                # The store's subscribers hear of these rows as of its own writes
                # (from the writer's thread, as the sync client forwards what it applies).
                own.subscribe(TABLE, self.store.notify)
                self._own = own
                self._thread = threading.Thread(target=self._run, name="syncstore-events", daemon=True)
                self._thread.start()
            self._started = True
            atexit.register(self.close)

    def _run(self) -> None:
        while not self.closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._buffer and not self.closed:
                self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:
            # The events stay buffered and a later flush tries again; say so once
            # per failure streak rather than at every interval.
            if not self._failing:
                log.exception("could not write %d buffered events; will retry", len(self._buffer))
            self._failing = True
        else:
            if self._failing:
                log.warning("buffered events are being written again")
            self._failing = False

    def _rows(self, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Complete rows for buffered items: a UUIDv7 id and the timestamp text
        made from each event's own time (inlined: this loop is the writer's hot path)."""
        rand = os.urandom(10 * len(batch)).hex()
        variant = _VARIANT
        rows = []
        append = rows.append
        at = 0
        # Events come in bursts: the id's millisecond part and the timestamp's
        # date and time up to the second are formatted once per millisecond and
        # per second, not once per event.
        last_ms = last_second = None
        id_prefix = second_text = ""
        for item in batch:
            us = item[0] // 1000
            ms = us // 1000
            if ms != last_ms:
                hex_ms = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
                id_prefix = f"{hex_ms[:8]}-{hex_ms[8:]}-7"
                last_ms = ms
                second = ms // 1000
                if second != last_second:
                    # As schema.format_timestamp writes it (isoformat: always four year digits).
                    second_text = (_EPOCH + dt.timedelta(seconds=second)).isoformat(timespec="seconds")
                    last_second = second
            r = rand[at : at + 19]
            at += 20
            # id, execution_id, event_type, timestamp, then severity ... data
            append(
                (
                    f"{id_prefix}{r[:3]}-{variant[r[3]]}{r[4:7]}-{r[7:]}",
                    item[1],
                    item[2],
                    f"{second_text}.{us % 1_000_000:06d}Z",
                    *item[3:],
                )
            )
        return rows
