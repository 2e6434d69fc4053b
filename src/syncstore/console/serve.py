"""Serving the console: bind 127.0.0.1, print the URL with its token, run uvicorn.

:func:`serve` is ``syncstore ui``: it opens the replica and serves until
interrupted. :class:`ConsoleServer` serves a store that is already open, in
the foreground (:meth:`~ConsoleServer.run`) or from a background thread
(:meth:`~ConsoleServer.start`), for a program that embeds the console.

The socket is bound before anything is printed, so the URL names the real
port (``port=0`` picks a free one) and is never printed for a console that
could not start.
"""

from __future__ import annotations

import secrets
import signal
import socket
import sys
import threading
import time
from typing import Any, TextIO

import uvicorn

import syncstore
from syncstore.console.app import create_app

HOST = "127.0.0.1"  # never another interface: the console is for the person at this machine
DEFAULT_PORT = 8780


def new_token() -> str:
    """A fresh access token for one run (256 random bits)."""
    return secrets.token_urlsafe(32)


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: a free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class ConsoleServer:
    """The console over ``store`` on 127.0.0.1; the store stays the caller's to close.

    The port is bound when this is made. ``token`` defaults to a new random one;
    ``url`` holds it, as the address to open.
    """

    def __init__(
        self,
        store: syncstore.Store,
        *,
        port: int = DEFAULT_PORT,
        token: str | None = None,
        sync_url: str | None = None,
        sync_token: str | None = None,
        log_level: str = "warning",
        **options: Any,
    ):
        self.token = token or new_token()
        self.app = create_app(store, token=self.token, sync_url=sync_url, sync_token=sync_token, **options)
        self._socket = bind(port)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The address to open: it signs the browser in."""
        return f"{self.base}/?token={self.token}"

    def run(self) -> None:
        """Serve in this thread until the server is told to stop (a signal, :meth:`stop`)."""
        self.server.run(sockets=[self._socket])

    def start(self, timeout: float = 30.0) -> ConsoleServer:
        """Serve from a background thread; returns once the console answers."""
        self._thread = threading.Thread(target=self.run, name="syncstore-console", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving: open pages are closed, the background sync stops."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._socket.close()


def serve(
    path: str,
    *,
    port: int = DEFAULT_PORT,
    sync_url: str | None = None,
    sync_token: str | None = None,
    busy_timeout_ms: int | None = None,
    token: str | None = None,
    out: TextIO | None = None,
    log_level: str = "warning",
) -> None:
    """Open the replica at ``path`` and serve the console until interrupted.

    Prints ``http://127.0.0.1:PORT/?token=...`` to ``out`` (stdout) once the port
    is bound. ``token`` is for tests; by default each run makes a new one.
    """
    options = {} if busy_timeout_ms is None else {"busy_timeout_ms": busy_timeout_ms}
    store = syncstore.open(path, **options)
    try:
        console = ConsoleServer(store, port=port, token=token, sync_url=sync_url, sync_token=sync_token, log_level=log_level)
        stream = out or sys.stdout
        print(f"syncstore console for {store.path}", file=stream)
        print(f"open {console.url}", file=stream, flush=True)
        with _exit_on_sigterm():
            console.run()
    finally:
        store.close()


class _exit_on_sigterm:
    """uvicorn shuts down on SIGTERM and then raises it again for the previous
    handler: make that a clean exit, so the store is closed on the way out."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _exit)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)
