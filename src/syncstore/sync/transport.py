"""One websocket to the sync server: messages out, one queue of what comes in.

A reader thread turns incoming frames into decoded messages on a queue; the
same queue carries wake-ups from local writers, so the sync loop waits on one
thing and reacts at once to either. Errors from websockets and the socket
layer become :class:`~syncstore.errors.SyncError` here, at the boundary.
"""

from __future__ import annotations

import queue
import threading
from contextlib import ExitStack
from typing import NamedTuple, Union
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from syncstore.core import protocol as p
from syncstore.errors import ProtocolError, SyncError

DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_MAX_FRAME = 16 * 1024 * 1024  # largest frame accepted from the server


class Received(NamedTuple):
    message: p.Message


class Closed(NamedTuple):
    error: Exception


class Wake(NamedTuple):
    pass


Item = Union[Received, Closed, Wake]


def redact(url: str) -> str:
    """The URL without user info or query (either may carry a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Transport:
    """An open connection. ``get`` waits for the next item; ``wake`` interrupts it."""

    def __init__(
        self,
        url: str,
        *,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        max_frame: int = DEFAULT_MAX_FRAME,
        ping_interval: float | None = 20.0,
    ):
        self.url = redact(url)
        self._stack = ExitStack()  # connect() is a context manager; close() leaves it
        try:
            self._ws: ClientConnection = self._stack.enter_context(connect(
                url,
                open_timeout=open_timeout,
                max_size=max_frame,
                compression=None,  # MessagePack of clocks and ids compresses poorly; save the CPU
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
                close_timeout=2.0,
            ))
        except InvalidURI as exc:
            raise SyncError(f"not a websocket URL: {self.url} ({exc})") from None
        except InvalidStatus as exc:
            raise SyncError(f"{self.url}: the server refused the websocket (HTTP {exc.response.status_code})") from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise SyncError(f"cannot connect to {self.url}: {exc or type(exc).__name__}") from None
        self._items: queue.Queue[Item] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="syncstore-sync-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for frame in self._ws:
                try:
                    self._items.put(Received(p.decode(frame)))
                except ProtocolError as exc:
                    self._items.put(Closed(exc))
                    self._ws.close(code=1002, reason="bad frame")
                    return
        except ConnectionClosed as exc:
            self._items.put(Closed(SyncError(f"{self.url}: connection lost ({_why(exc)})")))
            return
        except Exception as exc:  # the reader must always report why it stopped
            self._items.put(Closed(SyncError(f"{self.url}: connection failed ({exc})")))
            return
        self._items.put(Closed(SyncError(f"{self.url}: the server closed the connection ({_why(None, self._ws)})")))

    def send(self, message: p.Message) -> None:
        try:
            self._ws.send(p.encode(message))
        except ConnectionClosed as exc:
            raise SyncError(f"{self.url}: connection lost while sending ({_why(exc)})") from None
        except OSError as exc:
            raise SyncError(f"{self.url}: cannot send ({exc})") from None

    def get(self, timeout: float | None) -> Item | None:
        """The next item, or None when ``timeout`` seconds pass first."""
        try:
            return self._items.get(timeout=timeout)
        except queue.Empty:
            return None

    def wake(self) -> None:
        self._items.put(Wake())

    def close(self) -> None:
        self._stack.close()
        self._reader.join(timeout=5.0)


def _why(exc: ConnectionClosed | None, ws: ClientConnection | None = None) -> str:
    close = exc.rcvd if exc is not None else (ws.close_code, ws.close_reason) if ws is not None else None
    if close is None:
        return "no close frame"
    if isinstance(close, tuple):
        code, reason = close
    else:
        code, reason = close.code, close.reason
    return f"code {code}{': ' + reason if reason else ''}"
