"""One websocket connection: a thin driver of the core server session.

The session (:mod:`syncstore.core.server_session`) decides; this driver does
the I/O it asks for: checks the token, runs merges and log reads against the
change store, sends messages, and closes. A frame goes straight to the socket
when nothing is queued before it and the socket has room (most live
deliveries: the same bytes for every stream of the same shapes), else through
the connection's queue and its writer task. Merges and
reads run as tasks beside the frame reader, so a client that is pushing still
receives live changes, and the session keeps at most one of each in flight.

Backpressure: the next log read (and snapshot chunk) waits until every queued
message was written to the socket, so a client catching up slows its own
stream and nobody else's. A live stream gets new entries pushed by the router
without waiting; its queue is bounded (``max_queue`` bytes): a client that
falls that far behind is disconnected (``too_slow``, close 1013) and catches
up by cursor when it reconnects, so it never grows the server's memory.

Shutdown (:meth:`ConnectionHandler.drain`): stop reading frames, let the merge
in flight finish and its Ack go out, then close with 1001 (going away). A push
queued behind it is not merged: it was never acked, so the client sends it again.
A connection that drops mid-merge is handled the same way: the merge completes
(or rolls back) as a whole, never half.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, NamedTuple

import psycopg
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State as WsState

from syncstore.core import protocol as p
from syncstore.core import server_session as ss
from syncstore.errors import AuthError, SyncError

from syncstore_server import auth
from syncstore_server.log_tail import LogTail
from syncstore_server.metrics import Metrics
from syncstore_server.notify import Notifier
from syncstore_server.store import ChangeStore, SiteReused

log = logging.getLogger("syncstore.server.handler")

CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
DEFAULT_MAX_QUEUE = 8 * 1024 * 1024  # bytes queued for one client before it is dropped


class Limits(NamedTuple):
    max_batch: int
    max_frame: int
    hello_timeout_s: float
    idle_timeout_s: float
    log_read_limit: int
    server_id: str
    schema: int
    max_queue: int = DEFAULT_MAX_QUEUE
    snapshot_rows: int = 2_000  # rows per snapshot chunk (fewer when they are large)


class _Closing(NamedTuple):
    code: int
    reason: str


class ConnectionHandler:
    def __init__(
        self,
        websocket: ServerConnection,
        *,
        store: ChangeStore,
        log_tail: LogTail,
        notifier: Notifier,
        metrics: Metrics,
        secret: auth.Secret,
        limits: Limits,
    ):
        self.ws = websocket
        self.store = store
        self.log_tail = log_tail
        self.notifier = notifier
        self.metrics = metrics
        self.secret = secret
        self.limits = limits
        self.session = ss.ServerSession(
            tables=store.catalog.tables,
            max_batch=limits.max_batch,
            max_frame=limits.max_frame,
            server_id=limits.server_id,
            schema=limits.schema,
            max_drift_ms=store.max_drift_ms,
        )
        self._out: asyncio.Queue[bytes | _Closing] = asyncio.Queue()
        self._queued = 0  # bytes waiting in _out
        self._tenant: str | None = None  # joined the log tail as
        self._tasks: set[asyncio.Task[Any]] = set()
        self._merge_task: asyncio.Task[None] | None = None
        self._last_heard = time.monotonic()
        self._ping_nonce = 0
        self._closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._draining = False

    # --- lifecycle -----------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        self._reader = asyncio.create_task(self._read_loop())
        try:
            await asyncio.wait({writer, self._reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._reader.cancel()
            await asyncio.wait({self._reader}, timeout=5)
            # Frames that come from now on are dropped unread (a push among them
            # was never acked: the client sends it again). Reading them on lets
            # the client's answer to our close through, which websockets holds
            # back while its queue of unread frames is full.
            discard = asyncio.create_task(self._discard()) if self._reader.done() else None
            self.session.drain()
            await self._settle_merge()  # its Ack is queued before the close
            self.session.close()
            self.log_tail.router.unregister(self)
            if self._tenant is not None:
                self.log_tail.leave(self._tenant)
                self._tenant = None
            for task in list(self._tasks):
                task.cancel()
            if not writer.done():
                if self._draining:
                    self._out.put_nowait(_Closing(CLOSE_GOING_AWAY, "server shutting down"))
                else:
                    self._out.put_nowait(_Closing(1000, ""))
                try:
                    await asyncio.wait_for(writer, 5)
                except (asyncio.TimeoutError, ConnectionClosed):
                    writer.cancel()
            if discard is not None:
                discard.cancel()
            self._closed.set()

    async def drain(self) -> None:
        """Stop reading, let the merge in flight finish and its Ack go out, close with 1001."""
        self._draining = True
        if self._reader is not None:
            self._reader.cancel()
        await self._closed.wait()

    async def _settle_merge(self) -> None:
        # A merge is never cancelled halfway: it commits or rolls back as a
        # whole in PostgreSQL, and waiting lets its Ack reach the client.
        task = self._merge_task
        if task is not None and not task.done():
            try:
                await asyncio.shield(task)
            except Exception:
                log.exception("a merge failed while the connection closed")

    # --- reading -------------------------------------------------------------

    async def _read_loop(self) -> None:
        limits = self.limits
        try:
            while True:
                waiting = self.session.state is ss.State.AWAIT_HELLO
                budget = limits.hello_timeout_s if waiting else limits.idle_timeout_s / 2
                try:
                    # Not asyncio.wait_for: on Python 3.11 it returns a frame
                    # that arrives together with drain()'s cancel and drops the
                    # cancel, so the loop would wait on for the next frame.
                    async with asyncio.timeout(budget):
                        frame = await self.ws.recv()
                except TimeoutError:
                    if waiting:
                        self._fail("hello_timeout", "no Hello within the time allowed", CLOSE_GOING_AWAY)
                        return
                    if time.monotonic() - self._last_heard >= limits.idle_timeout_s:
                        self._fail("idle_timeout", "nothing heard from the client for too long", CLOSE_GOING_AWAY)
                        return
                    self._ping_nonce += 1
                    self.session.ping(self._ping_nonce)
                    self._dispatch()
                    continue
                if self._draining or self.session.state is ss.State.CLOSED:
                    return  # a push read now is not merged: it was never acked, the client sends it again
                self._last_heard = time.monotonic()
                self.session.receive_frame(frame)
                self._dispatch()
                if self.session.state is ss.State.CLOSED:
                    return
        except ConnectionClosed:
            return

    async def _discard(self) -> None:
        try:
            while True:
                await self.ws.recv()
        except ConnectionClosed:
            return

    def _fail(self, code: str, message: str, close_code: int) -> None:
        self._send(p.Error(code=code, message=message, fatal=True))
        self.session.close()
        self._out.put_nowait(_Closing(close_code, code))

    # --- writing -------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._out.get()
                try:
                    if isinstance(item, _Closing):
                        await self.ws.close(item.code, item.reason)
                        return
                    await self.ws.send(item)
                finally:
                    if not isinstance(item, _Closing):
                        self._queued -= len(item)
                    self._out.task_done()
        except ConnectionClosed:
            return

    def _too_slow(self) -> None:
        """The client fell too far behind: drop what is queued, say why, close.
        It reconnects and catches up from its cursor at its own pace."""
        log.info("dropping a client that fell %d bytes behind", self._queued)
        self.log_tail.router.unregister(self)
        while True:
            try:
                item = self._out.get_nowait()
            except asyncio.QueueEmpty:
                break
            if not isinstance(item, _Closing):
                self._queued -= len(item)
            self._out.task_done()
        self.session.close()
        message = p.Error(code="too_slow", message="the client fell too far behind; reconnect and catch up", fatal=True)
        self.metrics.errors.labels(message.code).inc()
        self._write(p.encode(message))
        self._out.put_nowait(_Closing(CLOSE_TRY_AGAIN_LATER, "too_slow"))
        if self._reader is not None:
            self._reader.cancel()

    def _send(self, message: p.Message) -> None:
        if isinstance(message, p.Error):
            self.metrics.errors.labels(message.code).inc()
        if isinstance(message, p.Changes):
            # Keep frames within what this server accepts, which clients are
            # built to accept too; one transaction is never split.
            for frame in ss.encode_changes(message.txs, cursor=message.cursor, max_frame=self.limits.max_frame):
                self._write(frame)
            return
        self._write(p.encode(message))

    def _write(self, frame: bytes) -> None:
        """Send ``frame`` after everything sent before it."""
        ws = self.ws
        if self._out.empty() and not ws.paused and ws.protocol.state is WsState.OPEN and not ws.transport.is_closing():
            # Nothing waits before it and the socket takes data: hand it to the
            # socket now, as ``ws.send`` would, without a hop through the
            # writer task (a commit reaches a thousand live streams this way).
            # The writer task has put everything it took on the socket already:
            # ``ws.send`` writes before it waits for the buffer to drain.
            try:
                ws.protocol.send_binary(frame)
                ws.send_data()
            except Exception as exc:
                log.info("a send failed (%s): closing the connection", type(exc).__name__)
                ws.transport.abort()
            return
        self._queued += len(frame)
        self._out.put_nowait(frame)

    # --- actions -------------------------------------------------------------

    def _dispatch(self) -> None:
        for action in self.session.actions():
            if isinstance(action, ss.SendEncoded):
                for frame in action.frames:
                    self._write(frame)
            elif isinstance(action, ss.Send):
                self._send(action.message)
            elif isinstance(action, ss.Close):
                self._out.put_nowait(_Closing(action.code, action.reason))
            elif isinstance(action, ss.Authenticate):
                self._spawn(self._authenticate(action))
            elif isinstance(action, ss.Merge):
                self._merge_task = self._spawn(self._merge(action))
            elif isinstance(action, ss.ReadLog):
                self._spawn(self._read_log(action))
            elif isinstance(action, ss.ReadSnapshot):
                self._spawn(self._read_snapshot(action))
            elif isinstance(action, ss.FetchRows):
                self._spawn(self._fetch_rows(action))
            elif isinstance(action, ss.Live):
                self._go_live(action)
            elif isinstance(action, ss.Resolve):
                self._spawn(self._resolve(action))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _authenticate(self, action: ss.Authenticate) -> None:
        try:
            identity = auth.verify_token(self.secret, action.token)
        except AuthError as exc:
            code = "token_expired" if "expired" in str(exc) else "bad_token"
            self.session.refuse(code, str(exc))
            self._dispatch()
            return
        try:
            acked, fingerprint = await self.store.site_ack(identity.tenant, action.site)
        except psycopg.Error as exc:
            log.warning("cannot read acks (%s)", type(exc).__name__)
            self.session.refuse("unavailable", "the server cannot reach its database; try again")
            self._dispatch()
            return
        self.session.accept(identity, acked_seq=acked, acked_fingerprint=fingerprint)
        if self.session.state is ss.State.READY:
            # One notifier subscription per tenant and process wakes the shared
            # log tail, which routes new entries to the live streams.
            self._tenant = identity.tenant
            self.log_tail.join(identity.tenant, self.notifier.subscribe)
        self._dispatch()

    # --- live streams --------------------------------------------------------

    def _go_live(self, action: ss.Live) -> None:
        router = self.log_tail.router
        if action.shapes is None or self.session.state is not ss.State.READY:
            router.unregister(self)
            return
        assert self._tenant is not None
        router.register(self, self._tenant, action.shapes)
        head = self.log_tail.head(self._tenant)
        if head is not None and head > action.position:
            # The cache moved on since the read that ended the catch-up (it
            # was answered from the database): route what it holds beyond.
            self.log_tail.poke(self._tenant)

    def deliver(self, entries: ss.Delivery) -> None:
        """New log entries the router selected for this stream (and every stream of the same shapes)."""
        if self._queued > self.limits.max_queue:
            # Still holding more than the limit of what was sent before: the
            # client reads slower than the log grows.
            self._too_slow()
            return
        self.session.deliver(entries)
        self._dispatch()

    async def _merge(self, action: ss.Merge) -> None:
        identity = self.session.identity
        assert identity is not None and self.session.site is not None
        started = time.perf_counter()
        try:
            result = await self.store.merge(
                identity.tenant, self.session.site, action.txs, client_schema=self.session.client_schema
            )
        except SiteReused as exc:
            log.warning("push refused for tenant %r: %s", identity.tenant, exc)
            self.session.merge_failed("site_reused", str(exc))
            self._dispatch()
            return
        except (psycopg.Error, SyncError) as exc:
            log.warning("merge failed for tenant %r: %s", identity.tenant, type(exc).__name__)
            self.session.merge_failed("unavailable", "the server could not merge the push; connect again and retry")
            self._dispatch()
            return
        except Exception:
            log.exception("merge failed for tenant %r", identity.tenant)
            self.session.merge_failed("server_error", "the server failed to merge the push; nothing was merged")
            self._dispatch()
            return
        metrics = self.metrics
        metrics.merge_seconds.observe(time.perf_counter() - started)
        metrics.pushes.inc()
        metrics.changes_merged.inc(result.row_changes)
        metrics.conflicts.inc(result.conflicts)
        metrics.rejected.inc(len(result.rejected))
        if result.deferred is not None:
            deferred = result.deferred
            self.session.merge_deferred(
                upto_seq=result.upto_seq,
                first_seq=deferred.first_seq,
                code=deferred.code,
                message=deferred.message,
                retry_after_ms=deferred.retry_after_ms,
                rejected=result.rejected,
                log_seq=max(result.positions, default=0),
            )
        else:
            self.session.merged(
                upto_seq=result.upto_seq, rejected=result.rejected, log_seq=max(result.positions, default=0)
            )
        self._dispatch()

    async def _read_log(self, action: ss.ReadLog) -> None:
        identity = self.session.identity
        assert identity is not None
        await self._out.join()  # backpressure: the client has taken what we sent
        try:
            found = await self.log_tail.read(identity.tenant, action.after, limit=self.limits.log_read_limit)
        except Exception as exc:
            _read_failed("log read", identity.tenant, exc)
            self.session.log_failed("unavailable", "the server could not read its change log; connect again")
            self._dispatch()
            return
        # No await between the read and this: a stream that goes live at the
        # read's head is owed exactly what the router sends after it.
        self.session.log_read(
            found.entries, more=found.more, oldest=found.oldest, head=None if found.more else found.head
        )
        self._dispatch()

    async def _read_snapshot(self, action: ss.ReadSnapshot) -> None:
        identity = self.session.identity
        assert identity is not None
        await self._out.join()  # backpressure: one chunk in flight at a time
        if self.session.state is not ss.State.READY:
            return
        try:
            rows, position, exhausted = await self.store.read_snapshot(
                identity.tenant,
                action.shape,
                action.after_id,
                limit=self.limits.snapshot_rows,
                max_bytes=max(64 * 1024, self.limits.max_frame // 2),
                position=action.position,
            )
        except Exception as exc:
            _read_failed("snapshot read", identity.tenant, exc)
            self.session.snapshot_failed("unavailable", "the server could not read the snapshot; connect again")
            self._dispatch()
            return
        self.session.snapshot_read(rows, position=position, exhausted=exhausted)
        self._dispatch()

    async def _fetch_rows(self, action: ss.FetchRows) -> None:
        identity = self.session.identity
        assert identity is not None
        try:
            rows = await self.store.read_rows(identity.tenant, action.table, action.ids)
        except Exception as exc:
            _read_failed("row fetch", identity.tenant, exc)
            self.session.fetch_failed("unavailable", "the server could not read the rows; connect again")
            self._dispatch()
            return
        self.session.rows_read(action.id, rows)
        self._dispatch()

    async def _resolve(self, action: ss.Resolve) -> None:
        identity = self.session.identity
        assert identity is not None and self.session.site is not None
        try:
            await self.store.mark_resolved(identity.tenant, action.conflict_ids, by=f"site:{self.session.site.hex()}")
        except psycopg.Error as exc:
            log.warning("marking conflicts resolved failed: %s", type(exc).__name__)
            self.session.resolve_done(ok=False)
        else:
            self.session.resolve_done(ok=True)
        self._dispatch()


def _read_failed(what: str, tenant: str, exc: Exception) -> None:
    """Log a failed read: a database error briefly (its type: the message may
    quote values), anything else with its traceback."""
    if isinstance(exc, psycopg.Error):
        log.warning("%s failed for tenant %r: %s", what, tenant, type(exc).__name__)
    else:
        log.exception("%s failed for tenant %r", what, tenant)
