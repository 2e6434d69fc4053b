"""Serving the console: bind 127.0.0.1, print the URL with its token, run uvicorn.

The socket is bound before the URL is printed, so the URL names the real
port (``port=0`` picks a free one) and is never printed for a console that
could not start.
"""

from __future__ import annotations

import secrets
import signal
import socket
import sys
import threading
from typing import Callable, TextIO

import uvicorn

import syncstore
from syncstore.console.app import create_app

HOST = "127.0.0.1"  # never another interface: the console is for the person at this machine
DEFAULT_PORT = 8780


def new_token() -> str:
    """A fresh access token for one run (256 random bits)."""
    return secrets.token_urlsafe(32)


def bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    path: str,
    *,
    port: int = DEFAULT_PORT,
    sync_url: str | None = None,
    sync_token: str | None = None,
    busy_timeout_ms: int | None = None,
    token: str | None = None,
    out: TextIO | None = None,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Open the replica at ``path`` and serve the console until interrupted.

    Prints ``http://127.0.0.1:PORT/?token=...`` to ``out`` (stdout) once the port
    is bound. ``token`` is for tests; by default each run makes a new one.
    """
    token = token or new_token()
    options = {} if busy_timeout_ms is None else {"busy_timeout_ms": busy_timeout_ms}
    store = syncstore.open(path, **options)
    try:
        sock = bind(port)
        actual = sock.getsockname()[1]
        app = create_app(store, token=token, sync_url=sync_url, sync_token=sync_token)
        config = uvicorn.Config(
            app, log_level=log_level, access_log=False, timeout_graceful_shutdown=2, lifespan="on"
        )
        server = uvicorn.Server(config)
        url = f"http://{HOST}:{actual}/?token={token}"
        stream = out or sys.stdout
        print(f"syncstore console for {store.path}", file=stream)
        print(f"open {url}", file=stream, flush=True)
        if on_ready is not None:
            on_ready(url)
        with _exit_on_sigterm():
            server.run(sockets=[sock])
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
