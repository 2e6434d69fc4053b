"""The sync server daemon: websockets in front, PostgreSQL behind.

:class:`SyncServer` wires the parts: it checks (and by default applies) the
schema migrations, opens a psycopg connection pool, starts the LISTEN
connection that wakes log streams, and serves websockets with plain HTTP
(health, readiness, metrics) on the same port. Configuration is keyword-only
with production defaults.

Stopping (:meth:`SyncServer.stop`, or SIGTERM/SIGINT under
:meth:`SyncServer.serve_forever`) drains: new connections are refused, each
connection finishes the merge it is running and sends its Ack, then closes
with 1001; then the notifier and the pool close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.server import Server, ServerConnection, serve

from syncstore.core import hlc as hlc_mod
from syncstore.core.server_session import DEFAULT_MAX_BATCH
from syncstore.errors import SyncError

from syncstore_server import background
from syncstore_server import migrate as migrations
from syncstore_server.auth import Secret
from syncstore_server.direct_writes import DirectWrites
from syncstore_server.embedded import DEFAULT_DATA_DIR, database
from syncstore_server.handler import DEFAULT_MAX_QUEUE, ConnectionHandler, Limits
from syncstore_server.http import HttpEndpoints, HttpSettings
from syncstore_server.log_tail import LogTail
from syncstore_server.metrics import Metrics
from syncstore_server.notify import Notifier
from syncstore_server.router import Router
from syncstore_server.staging import DEFAULT_MAX_STAGED_CHANGES
from syncstore_server.store import CONNECTION_OPTIONS, ChangeStore, load_catalog, prepare_connection
from syncstore_server.validate import DEFAULT_MAX_TX_CHANGES

log = logging.getLogger("syncstore.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_FRAME = 4 * 1024 * 1024


class SyncServer:
    """One server process. ``await start()``, then ``await stop()``; or ``serve_forever()``."""

    def __init__(
        self,
        database_url: str,
        *,
        secret: Secret,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_tx_changes: int = DEFAULT_MAX_TX_CHANGES,
        max_staged_changes: int = DEFAULT_MAX_STAGED_CHANGES,
        max_connections: int = 1000,
        hello_timeout_s: float = 10.0,
        idle_timeout_s: float = 120.0,
        max_drift_ms: int = hlc_mod.DEFAULT_MAX_DRIFT_MS,
        pool_size: int = 10,
        drain_timeout_s: float = 30.0,
        log_read_limit: int = 200,
        apply_migrations: bool = True,
        http: HttpSettings | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        snapshot_rows: int = 2_000,
        compact_interval_s: float | None = None,
        retention_s: float = 7 * 86_400,
    ):
        self.database_url = database_url
        self._secret = secret
        self.host = host
        self.requested_port = port
        self.max_frame = max_frame
        self.max_batch = max_batch
        self.max_tx_changes = max_tx_changes  # changes of one pushed transaction, or of one part of a large one
        self.max_staged_changes = max_staged_changes  # changes of one transaction pushed in parts
        self.max_connections = max_connections
        self.hello_timeout_s = hello_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_drift_ms = max_drift_ms
        self.pool_size = pool_size
        self.drain_timeout_s = drain_timeout_s
        self.log_read_limit = log_read_limit
        self.apply_migrations = apply_migrations
        self.max_queue = max_queue
        self.snapshot_rows = snapshot_rows
        self.compact_interval_s = compact_interval_s  # None: no periodic compaction
        self.retention_s = retention_s
        self._compactor: asyncio.Task[None] | None = None
        self.http_settings = http or HttpSettings()  # memory search and fleet metrics (http.py)
        self.server_id = uuid.uuid4().hex[:12]
        self.metrics = Metrics()
        self._handlers: set[ConnectionHandler] = set()
        self._accepting = False
        self._pool: AsyncConnectionPool | None = None
        self._notifier: Notifier | None = None
        self._direct_writes: DirectWrites | None = None
        self._log_tail: LogTail | None = None
        self._ws: Server | None = None
        self._http: HttpEndpoints | None = None
        self.store: ChangeStore | None = None
        self.schema_version = 0

    def __repr__(self) -> str:  # the URL may carry a password: never shown
        return f"SyncServer(host={self.host!r}, port={self.requested_port}, server_id={self.server_id!r})"

    @property
    def port(self) -> int:
        """The port actually listened on (useful with ``port=0``)."""
        assert self._ws is not None, "not started"
        return self._ws.sockets[0].getsockname()[1]

    @property
    def connections(self) -> int:
        return len(self._handlers)

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        self.schema_version = await asyncio.to_thread(self._prepare_schema)
        pool = AsyncConnectionPool(
            self.database_url,
            min_size=1,
            max_size=self.pool_size,
            kwargs=CONNECTION_OPTIONS,
            configure=prepare_connection,
            open=False,
            name="syncstore",
        )
        await pool.open(wait=True, timeout=30)
        self._pool = pool
        async with pool.connection() as conn:
            catalog = await load_catalog(conn)
        self.store = ChangeStore(
            pool,
            catalog,
            max_drift_ms=self.max_drift_ms,
            max_tx_changes=self.max_tx_changes,
            max_staged_changes=self.max_staged_changes,
            # A log entry fits in a frame with room to spare; a larger transaction is logged as a group.
            max_entry_bytes=max(16 * 1024, self.max_frame // 2),
        )
        self._log_tail = LogTail(self.store, router=Router())
        self._notifier = Notifier(self.database_url)
        await self._notifier.start()
        # Rows written in PostgreSQL by plain SQL reach clients too (migration 0004).
        self._direct_writes = DirectWrites(self.store, self.database_url)
        await self._direct_writes.start()
        self._accepting = True
        # Plain HTTP on the same port: health, metrics, memory search (http.py).
        self._http = HttpEndpoints(
            database_url=self.database_url,
            store=self.store,
            metrics=self.metrics,
            secret=self._secret,
            accepting=lambda: self._accepting,
            connections=lambda: len(self._handlers),
            max_connections=self.max_connections,
            settings=self.http_settings,
        )
        self._ws = await serve(
            self._handle,
            self.host,
            self.requested_port,
            process_request=self._http.process_request,
            max_size=self.max_frame,
            # MessagePack frames are small and already dense; deflate would
            # cost CPU per subscriber on every live change.
            compression=None,
        )
        if self.compact_interval_s:
            from syncstore_server.compaction import run_periodically

            self._compactor = asyncio.create_task(
                run_periodically(self.store, interval_s=self.compact_interval_s, retention_s=self.retention_s),
                name="syncstore-compaction",
            )
        log.info(
            "syncstore server %s listening on %s:%s (schema %s, pgvector %s)",
            self.server_id, self.host, self.port, self.schema_version, "yes" if catalog.vector else "no",
        )  # fmt: skip

    def _prepare_schema(self) -> int:
        try:
            conn = psycopg.connect(self.database_url, connect_timeout=30)
        except psycopg.OperationalError as exc:
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise SyncError(f"cannot reach the database: {detail}") from None
        with conn:
            if self.apply_migrations:
                for migration in migrations.migrate(conn):
                    log.info("applied server migration %s (%s)", migration.version, migration.name)
            return migrations.check(conn).current

    async def stop(self) -> None:
        """Drain and stop: refuse new clients, let merges finish and ack, close."""
        self._accepting = False
        await background.stop(self._compactor, what="periodic compaction")
        self._compactor = None
        if self._ws is not None:
            self._ws.close(close_connections=False)  # stop listening; connections drain below
            handlers = list(self._handlers)
            if handlers:
                done, pending = await asyncio.wait(
                    [asyncio.create_task(h.drain()) for h in handlers], timeout=self.drain_timeout_s
                )
                if pending:
                    log.warning("%d connections did not drain in time; closing them", len(pending))
                    for task in pending:
                        task.cancel()
                    for handler in list(self._handlers):
                        handler.ws.transport.abort()
            try:
                await asyncio.wait_for(self._ws.wait_closed(), self.drain_timeout_s)
            except asyncio.TimeoutError:
                log.warning("connection handlers still running at shutdown")
            self._ws = None
        if self._http is not None:  # memory search's own connections and index builds (http.py)
            await self._http.close()
            self._http = None
        if self._direct_writes is not None:
            await self._direct_writes.stop()
            self._direct_writes = None
        if self._notifier is not None:
            await self._notifier.stop()
            self._notifier = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        log.info("syncstore server %s stopped", self.server_id)

    async def serve_forever(self) -> None:
        """Start, run until SIGTERM or SIGINT, then drain and stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
            log.info("stopping: draining %d connections", len(self._handlers))
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def __aenter__(self) -> SyncServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # --- connections ----------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        assert self.store is not None and self._notifier is not None and self._log_tail is not None
        handler = ConnectionHandler(
            websocket,
            store=self.store,
            log_tail=self._log_tail,
            notifier=self._notifier,
            metrics=self.metrics,
            secret=self._secret,
            limits=Limits(
                max_batch=self.max_batch,
                max_frame=self.max_frame,
                hello_timeout_s=self.hello_timeout_s,
                idle_timeout_s=self.idle_timeout_s,
                log_read_limit=self.log_read_limit,
                server_id=self.server_id,
                schema=self.schema_version,
                max_queue=self.max_queue,
                snapshot_rows=self.snapshot_rows,
            ),
        )
        self._handlers.add(handler)
        self.metrics.connected.inc()
        try:
            await handler.run()
        finally:
            self._handlers.discard(handler)
            self.metrics.connected.dec()


def run(*, database_url: str | None = None, data_dir: str = DEFAULT_DATA_DIR, secret: Secret, **options: Any) -> None:
    """Run a server until SIGTERM/SIGINT: on ``database_url``, or on an
    embedded PostgreSQL in ``data_dir`` when no URL is given (stopped on exit).
    ``options`` are :class:`SyncServer`'s keyword arguments."""
    with database(database_url, data_dir=data_dir) as url:
        asyncio.run(SyncServer(url, secret=secret, **options).serve_forever())
